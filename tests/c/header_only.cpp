// Compiled alone with g++ -std=c++17 -fsyntax-only: the header must stand on its own as C++.
#include "btm.h"
