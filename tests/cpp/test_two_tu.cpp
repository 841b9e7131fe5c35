// The header included from two translation units linked together: a result
// made in one is read, typed, in the other.
#include "test_support.hpp"
#include "two_tu.hpp"

using namespace test;

TEST(TwoTranslationUnits, ResultTypesKeepOneIdentity) {
    EXPECT_EQ(two_tu::thumbnail_key_in_a(), two_tu::thumbnail_key_in_b());
    EXPECT_EQ(two_tu::thumbnail_key_in_a(), &btm::detail::type_key<two_tu::Thumbnail>);

    btm::Manager m{started()};
    const btm::TaskId made = two_tu::add_thumbnail_task(m, 64);
    const btm::TaskId used = two_tu::add_consumer_task(m, made);
    int width = 0;
    std::string name;
    ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
        if (const auto* c = std::get_if<btm::Completed>(&e)) {
            if (c->task_id == made) {
                width = two_tu::width_of(*c);
            } else if (c->task_id == used) {
                name = c->result<std::string>();
            }
        }
    }));
    EXPECT_EQ(width, 64);
    EXPECT_EQ(name, "thumb-64!");
}
