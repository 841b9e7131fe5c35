/* A stand-in for Windows 10's bcryptprimitives.dll, for Wine 8 (Debian 12),
 * which lacks it: Rust's std imports ProcessPrng from it. Built by
 * tests/windows/run.sh into the test's Wine prefix only. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    return BCryptGenRandom(NULL, data, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0;
}
