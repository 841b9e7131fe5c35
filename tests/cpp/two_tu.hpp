// Shared by two_tu_a.cpp and two_tu_b.cpp: two translation units that both
// include btm.hpp and are linked into one program.
#ifndef BTM_TEST_TWO_TU_HPP
#define BTM_TEST_TWO_TU_HPP

#include <btm.hpp>

#include <string>

namespace two_tu {

struct Thumbnail {
    int width = 0;
    int height = 0;
    std::string name;
};

// two_tu_a.cpp
btm::TaskId add_thumbnail_task(const btm::Manager& m, int size);
const void* thumbnail_key_in_a();
// two_tu_b.cpp
btm::TaskId add_consumer_task(const btm::Manager& m, btm::TaskId upstream);
int width_of(const btm::Completed& c);
const void* thumbnail_key_in_b();

}  // namespace two_tu

#endif
