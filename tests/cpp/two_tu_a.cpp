#include "two_tu.hpp"

namespace two_tu {

btm::TaskId add_thumbnail_task(const btm::Manager& m, int size) {
    return m.add_task([size] { return Thumbnail{size, size / 2, "thumb-" + std::to_string(size)}; });
}

const void* thumbnail_key_in_a() { return &btm::detail::type_key<Thumbnail>; }

}  // namespace two_tu
