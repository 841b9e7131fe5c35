// A thumbnail loader on btm: decode "images" on worker threads, show one
// progress line on the host thread, then gather every thumbnail with a
// pass-through task and print the contact sheet.
//
//   thumbnails [COUNT] [THREADS]
//
// The images are synthetic (generated pixels) so the example runs anywhere.
#include <btm.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

struct ImageFile {
    std::string name;
    int width;
    int height;
};

struct Thumbnail {
    std::string name;
    int width = 0;   // thumbnail size
    int height = 0;
    std::uint8_t r = 0, g = 0, b = 0;  // average colour
    std::vector<std::uint8_t> pixels;  // RGB, width * height * 3
};

constexpr int kThumbSize = 32;

/// "Decodes" an image (generates its pixels row by row, reporting progress)
/// and box-filters it down to a thumbnail.
Thumbnail load_thumbnail(btm::TaskContext& ctx, const ImageFile& file) {
    const int tw = std::max(1, std::min(kThumbSize, file.width));
    const int th = std::max(1, file.height * tw / file.width);
    std::vector<std::uint64_t> sums(static_cast<std::size_t>(tw * th * 3), 0);
    std::vector<std::uint64_t> counts(static_cast<std::size_t>(tw * th), 0);
    const unsigned seed = static_cast<unsigned>(std::hash<std::string>{}(file.name));
    for (int y = 0; y < file.height; ++y) {
        if (ctx.is_stopped()) {
            throw std::runtime_error("stopped");  // nobody will see it: the outcome is dropped
        }
        for (int x = 0; x < file.width; ++x) {
            const unsigned v = seed ^ static_cast<unsigned>(x * 7 + y * 13);
            const std::size_t cell = static_cast<std::size_t>((y * th / file.height) * tw + (x * tw / file.width));
            sums[cell * 3 + 0] += (v >> 0) & 0xff;
            sums[cell * 3 + 1] += (v >> 8) & 0xff;
            sums[cell * 3 + 2] += static_cast<unsigned>(x + y) & 0xff;
            ++counts[cell];
        }
        if (y % std::max(1, file.height / 4) == 0) {
            ctx.report_progress(static_cast<double>(y) / file.height, file.name);
            std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a slow disk
        }
    }
    Thumbnail t;
    t.name = file.name;
    t.width = tw;
    t.height = th;
    t.pixels.resize(sums.size());
    std::uint64_t total[3] = {0, 0, 0};
    for (std::size_t i = 0; i < counts.size(); ++i) {
        for (std::size_t c = 0; c < 3; ++c) {
            const auto value = static_cast<std::uint8_t>(sums[i * 3 + c] / std::max<std::uint64_t>(1, counts[i]));
            t.pixels[i * 3 + c] = value;
            total[c] += value;
        }
    }
    t.r = static_cast<std::uint8_t>(total[0] / counts.size());
    t.g = static_cast<std::uint8_t>(total[1] / counts.size());
    t.b = static_cast<std::uint8_t>(total[2] / counts.size());
    return t;
}

/// The host side: a progress line and the final gather.
class Host {
public:
    Host(std::size_t count, btm::TaskId gather) : count_(count), gather_(gather), tty_(isatty(1) != 0) {}

    void on_progress(const btm::Progress& p) {
        fraction_[p.task_id] = p.fraction;
        draw();
    }
    void on_completed(const btm::Completed& c) {
        if (c.task_id == gather_) {
            print_contact_sheet(c);
            return;
        }
        fraction_[c.task_id] = 1.0;
        ++loaded_;
        draw();
    }
    void on_failed(const btm::Failed& f) {
        std::printf("\ntask %llu failed: %s (%s)\n", static_cast<unsigned long long>(f.task_id), f.message.c_str(),
                    f.details.c_str());
        failed_ = true;
    }
    void on_group_finished(const btm::GroupFinished& g) {
        if (g.group.is_named()) {
            std::printf("%sgroup '%s' finished\n", tty_ ? "\n" : "", g.group.name().c_str());
        }
    }

    bool done() const { return gathered_ != 0 || failed_; }
    std::size_t gathered() const { return gathered_; }

private:
    void draw() {
        double sum = 0;
        for (const auto& kv : fraction_) {
            sum += kv.second;
        }
        const double overall = sum / static_cast<double>(count_);
        const int width = 30;
        const int filled = static_cast<int>(overall * width);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(width, '-');
        if (tty_) {
            std::printf("\r[%s] %3zu/%zu thumbnails %3d%%", bar.c_str(), loaded_, count_, static_cast<int>(overall * 100));
            std::fflush(stdout);
        } else if (loaded_ != last_printed_) {  // not a terminal: one line per thumbnail
            last_printed_ = loaded_;
            std::printf("[%s] %3zu/%zu thumbnails %3d%%\n", bar.c_str(), loaded_, count_,
                        static_cast<int>(overall * 100));
        }
    }

    void print_contact_sheet(const btm::Completed& c) {
        // The gathered result: the pass-through's payload (the album title)
        // first, then one entry per thumbnail, in the order they completed.
        const std::string& album = c.result<std::string>();
        std::printf("%scontact sheet for '%s':\n", tty_ ? "\n" : "", album.c_str());
        std::size_t bytes = 0;
        for (btm::Value v : c.results) {
            if (const Thumbnail* t = v.get_if<Thumbnail>()) {
                std::printf("  %-14s %2dx%-2d  avg #%02x%02x%02x  (task %llu)\n", t->name.c_str(), t->width, t->height,
                            t->r, t->g, t->b, static_cast<unsigned long long>(v.task_id()));
                bytes += t->pixels.size();
                ++gathered_;
            }
        }
        std::printf("gathered %zu thumbnails (%zu bytes of pixels) for album '%s'\n", gathered_, bytes, album.c_str());
    }

    std::size_t count_;
    btm::TaskId gather_;
    bool tty_;
    std::map<btm::TaskId, double> fraction_;
    std::size_t loaded_ = 0;
    std::size_t last_printed_ = static_cast<std::size_t>(-1);
    std::size_t gathered_ = 0;
    bool failed_ = false;
};

}  // namespace

int main(int argc, char** argv) {
    const std::size_t count = argc > 1 ? static_cast<std::size_t>(std::strtoul(argv[1], nullptr, 10)) : 12;
    const int threads = argc > 2 ? std::atoi(argv[2]) : 4;
    try {
        std::printf("btm %s (header %s): loading %zu thumbnails on %d threads\n", btm::version(), BTM_VERSION, count,
                    threads);
        btm::Manager manager{btm::Config{}.max_threads(threads)};
        const btm::Group group = manager.group_named("thumbnails");

        std::vector<btm::TaskId> loads;
        for (std::size_t i = 0; i < count; ++i) {
            ImageFile file{"IMG_" + std::to_string(1000 + i) + ".jpg", 640 + static_cast<int>(i % 5) * 160,
                           480 + static_cast<int>(i % 3) * 120};
            // Visible thumbnails first: earlier images get higher priority.
            loads.push_back(manager.add_task(
                [file = std::move(file)](btm::TaskContext& ctx) { return load_thumbnail(ctx, file); },
                btm::TaskOptions{}.group(group).priority(static_cast<std::int32_t>(count - i))));
        }
        // The final gather: a pass-through that waits for every load and
        // collects their thumbnails after its own payload.
        const btm::TaskId gather =
            manager.add_pass_through(std::string("Holiday 2026"), btm::TaskOptions{}.upstream(loads));

        Host host(count, gather);
        manager.start();
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!host.done() && std::chrono::steady_clock::now() < deadline) {
            manager.wait_events(std::chrono::milliseconds(100));
            manager.drain(host);
        }
        if (host.gathered() != count) {
            std::fprintf(stderr, "error: gathered %zu of %zu thumbnails\n", host.gathered(), count);
            return 1;
        }
        return 0;
    } catch (const btm::Error& e) {
        std::fprintf(stderr, "btm error: %s\n", e.what());
        return 1;
    }
}
