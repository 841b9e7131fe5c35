// Type identity of results: unit checks of the rules, and a real crossing
// of a shared-object boundary (plugin.cpp, hidden visibility).
#include "test_support.hpp"
#include "two_tu.hpp"

using namespace test;

extern "C" btm_task_id btm_test_plugin_add_task(btm_manager* m, int size);
extern "C" const void* btm_test_plugin_thumbnail_key();
extern "C" int btm_test_plugin_read_width(const btm_value* v);

namespace {
struct Local {
    int x;
};
}  // namespace

TEST(Identity, KeysFromAnotherImageMatchOnlyThroughTypeInfo) {
    using btm::detail::same_type;
    using btm::detail::type_key;
    using btm::detail::type_name;
    EXPECT_TRUE(same_type(&type_key<int>, &type_key<int>));
    EXPECT_FALSE(same_type(&type_key<int>, &type_key<long>));
    EXPECT_FALSE(same_type(&type_key<Local>, &type_key<two_tu::Thumbnail>));
    // A second key object for one type, as another shared object has.
    const btm::detail::TypeKey thumb_copy{type_name<two_tu::Thumbnail>(), &typeid(two_tu::Thumbnail)};
    EXPECT_TRUE(same_type(&type_key<two_tu::Thumbnail>, &thumb_copy));
    // Same name but no RTTI on one side: never trusted.
    const btm::detail::TypeKey no_rtti{type_name<two_tu::Thumbnail>(), nullptr};
    EXPECT_FALSE(same_type(&type_key<two_tu::Thumbnail>, &no_rtti));
    // Same name, different type_info (what a local type would give): no.
    struct FunctionLocal {};
    const btm::detail::TypeKey impostor{type_name<FunctionLocal>(), &typeid(Local)};
    EXPECT_FALSE(same_type(&type_key<FunctionLocal>, &impostor));
}

TEST(Identity, TypeNamesAreReadable) {
    EXPECT_EQ(btm::detail::type_name<int>(), "int");
    EXPECT_EQ(btm::detail::type_name<two_tu::Thumbnail>(), "two_tu::Thumbnail");
    EXPECT_NE(btm::detail::type_name<std::vector<int>>().find("vector<int"), std::string_view::npos);
}

TEST(Identity, UnknownEventKindsAreSkipped) {
    btm_event e{};
    e.kind = 99;
    EXPECT_FALSE(btm::to_event(e).has_value());
    e.kind = BTM_EVENT_GROUP_FINISHED;
    ASSERT_TRUE(btm::to_event(e).has_value());
    EXPECT_TRUE(std::holds_alternative<btm::GroupFinished>(*btm::to_event(e)));
}

TEST(Identity, ResultsCrossAHiddenVisibilitySharedObject) {
    // The plugin really has its own copy of the key...
    EXPECT_NE(btm_test_plugin_thumbnail_key(), &btm::detail::type_key<two_tu::Thumbnail>);
    btm::Manager m{started()};
    // ...and a result made there is read, typed, here.
    const btm::TaskId made = btm_test_plugin_add_task(m.get(), 48);
    const btm::TaskId here = two_tu::add_thumbnail_task(m, 24);
    std::map<btm::TaskId, int> widths;
    int read_by_plugin = 0;
    ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
        if (const auto* c = std::get_if<btm::Completed>(&e)) {
            widths[c->task_id] = c->result<two_tu::Thumbnail>().width;
            EXPECT_THROW((void)c->result<std::string>(), btm::BadResultAccess);
            if (c->task_id == here) {
                read_by_plugin = btm_test_plugin_read_width(&c->results[0].raw());
            }
        }
    }));
    EXPECT_EQ(widths[made], 48);
    EXPECT_EQ(widths[here], 24);
    EXPECT_EQ(read_by_plugin, 24);
}
