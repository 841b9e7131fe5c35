/* Compiled alone with -fsyntax-only: the header must stand on its own as C11. */
#include "btm.h"
