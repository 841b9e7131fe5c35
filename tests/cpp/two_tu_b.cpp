#include "two_tu.hpp"

namespace two_tu {

btm::TaskId add_consumer_task(const btm::Manager& m, btm::TaskId upstream) {
    return m.add_task([](btm::TaskContext& ctx) { return ctx.upstream<Thumbnail>(0).name + "!"; },
                      btm::TaskOptions{}.upstream(upstream));
}

int width_of(const btm::Completed& c) { return c.result<Thumbnail>().width; }

const void* thumbnail_key_in_b() { return &btm::detail::type_key<Thumbnail>; }

}  // namespace two_tu
