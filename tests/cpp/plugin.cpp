// A "plugin": a shared library built with hidden visibility that includes
// btm.hpp itself (as an Unreal/Godot module would). Its btm::detail::type_key
// objects are private copies, so type identity across the boundary relies on
// the name fallback in btm::detail::same_type.
#include "two_tu.hpp"

#define BTM_PLUGIN_EXPORT __attribute__((visibility("default")))

extern "C" BTM_PLUGIN_EXPORT btm_task_id btm_test_plugin_add_task(btm_manager* m, int size) {
    return btm::ManagerRef(m).add_task(
        [size] { return two_tu::Thumbnail{size, size, "plugin-" + std::to_string(size)}; });
}

extern "C" BTM_PLUGIN_EXPORT const void* btm_test_plugin_thumbnail_key() {
    return &btm::detail::type_key<two_tu::Thumbnail>;
}

extern "C" BTM_PLUGIN_EXPORT int btm_test_plugin_read_width(const btm_value* v) {
    const btm::Value value(*v);
    return value.is<two_tu::Thumbnail>() ? value.get<two_tu::Thumbnail>().width : -1;
}
