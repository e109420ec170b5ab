// The page pool (src/page_pool.h) over real mmap'd memory, without Node: run
// by test/pagepool.test.js. Exits 0 when every check holds, 1 at the first
// that does not (with a line saying which).
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../src/page_pool.h"

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kRegion = 256 * 1024;  // V8's regular heap page

// The system's allocator as V8's default is: mmap, aligned by over-reserving.
class MmapAllocator final : public v8::PageAllocator {
 public:
  std::atomic<int> allocs{0}, frees{0};
  size_t AllocatePageSize() override { return kPage; }
  size_t CommitPageSize() override { return kPage; }
  void SetRandomMmapSeed(int64_t) override {}
  void* GetRandomMmapAddr() override { return nullptr; }
  void* AllocatePages(void*, size_t length, size_t alignment, Permission access) override {
    allocs++;
    const int prot = access == kNoAccess ? PROT_NONE
                     : access == kReadWrite ? PROT_READ | PROT_WRITE
                     : access == kRead      ? PROT_READ
                                            : PROT_READ | PROT_WRITE | PROT_EXEC;
    void* p = mmap(nullptr, length + alignment, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    auto a = reinterpret_cast<uintptr_t>(p);
    const uintptr_t aligned = (a + alignment - 1) / alignment * alignment;
    if (aligned > a) munmap(p, aligned - a);
    const uintptr_t end = a + length + alignment;
    if (end > aligned + length) munmap(reinterpret_cast<void*>(aligned + length), end - aligned - length);
    return reinterpret_cast<void*>(aligned);
  }
  bool FreePages(void* address, size_t length) override {
    frees++;
    return munmap(address, length) == 0;
  }
  bool ReleasePages(void* address, size_t length, size_t new_length) override {
    return munmap(static_cast<char*>(address) + new_length, length - new_length) == 0;
  }
  bool SetPermissions(void* address, size_t length, Permission access) override {
    return mprotect(address, length, access == kReadWrite ? PROT_READ | PROT_WRITE : PROT_NONE) == 0;
  }
  bool DecommitPages(void* address, size_t size) override {
    return mmap(address, size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == address;
  }
};

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::fprintf(stderr, "page_pool_test:%d: %s\n", __LINE__, #cond); \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

bool AllZero(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) return false;
  return true;
}

size_t Resident(void* p, size_t n) {
  std::vector<unsigned char> v(n / kPage);
  if (mincore(p, n, v.data()) != 0) return SIZE_MAX;
  size_t r = 0;
  for (unsigned char c : v) r += c & 1;
  return r;
}

// The permissions /proc/self/maps gives the mapping that holds p ("rw-p" for
// a readable-writable private one, "" for none).
std::string Perms(void* p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto a = reinterpret_cast<uintptr_t>(p);
  while (std::getline(maps, line)) {
    unsigned long lo, hi;
    char perms[8];
    if (std::sscanf(line.c_str(), "%lx-%lx %7s", &lo, &hi, perms) == 3 && a >= lo && a < hi) return perms;
  }
  return "";
}

void TestReuseIsScrubbed() {
  MmapAllocator base;
  teemate::PagePool pool(&base, 4 * kRegion);
  auto* p = static_cast<char*>(pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kNoAccess));
  CHECK(p != nullptr);
  CHECK(pool.SetPermissions(p, kRegion, v8::PageAllocator::kReadWrite));
  // A tenant's secret on the first and a middle page; the rest never touched.
  std::memset(p, 'S', kPage);
  std::memset(p + 20 * kPage, 'S', 3 * kPage);
  CHECK(Resident(p, kRegion) == 4);
  CHECK(pool.FreePages(p, kRegion));
  CHECK(base.frees == 0);
  CHECK(pool.counts().kept == 1 && pool.counts().pooled_bytes == kRegion);
  // Pooled: still mapped and resident (the point), zero, and left read-write
  // (changing the protection of resident pages is what the pool saves).
  CHECK(Perms(p) == "rw-p");
  CHECK(Resident(p, kRegion) == 4);  // the untouched pages were not faulted in to be zeroed
  CHECK(AllZero(p, kRegion));

  auto* q = static_cast<char*>(pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kReadWrite));
  CHECK(q == p);
  CHECK(base.allocs == 1);
  CHECK(Perms(q) == "rw-p");
  CHECK(AllZero(q, kRegion));
  CHECK(pool.counts().reused == 1 && pool.counts().pooled_bytes == 0);
  CHECK(pool.FreePages(q, kRegion));
  pool.Drain();
  CHECK(base.frees == 1 && pool.counts().pooled_bytes == 0);
}

// V8 uncommits a page it keeps (SetPermissions kNoAccess): the pool zeroes its
// resident pages in place instead of dropping them, so the next commit finds
// them resident and zero; smaller ranges (guard pages) go to V8's allocator.
void TestUncommitZeroesInPlace() {
  MmapAllocator base;
  teemate::PagePool pool(&base, 4 * kRegion);
  auto* p = static_cast<char*>(pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kNoAccess));
  CHECK(pool.SetPermissions(p, kRegion, v8::PageAllocator::kReadWrite));
  std::memset(p, 'S', 3 * kPage);
  CHECK(pool.SetPermissions(p, kRegion, v8::PageAllocator::kNoAccess));
  CHECK(pool.counts().uncommits_kept == 1);
  CHECK(Resident(p, 3 * kPage) == 3);
  CHECK(Perms(p) == "rw-p");
  CHECK(pool.SetPermissions(p, kRegion, v8::PageAllocator::kReadWrite));
  CHECK(AllZero(p, kRegion));
  // A guard page's worth is V8's allocator's to protect.
  CHECK(pool.SetPermissions(p + kRegion - kPage, kPage, v8::PageAllocator::kNoAccess));
  CHECK(Perms(p + kRegion - kPage) == "---p");
  CHECK(pool.counts().uncommits_kept == 1);
  // An executable range is not left executable.
  auto* x = static_cast<char*>(pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kReadWriteExecute));
  x[0] = 1;
  CHECK(pool.SetPermissions(x, kRegion, v8::PageAllocator::kNoAccess));
  CHECK(Perms(x) == "rw-p" && AllZero(x, kRegion));
  CHECK(pool.FreePages(p, kRegion) && pool.FreePages(x, kRegion));
  pool.Drain();
}

void TestWhatIsNotPooled() {
  MmapAllocator base;
  teemate::PagePool pool(&base, 64 * kRegion);
  // Too small, too large: straight back to the system.
  void* small = pool.AllocatePages(nullptr, 8 * kPage, kPage, v8::PageAllocator::kReadWrite);
  void* large = pool.AllocatePages(nullptr, 2 * teemate::PagePool::kMaxRegion, kPage, v8::PageAllocator::kReadWrite);
  CHECK(pool.FreePages(small, 8 * kPage));
  CHECK(pool.FreePages(large, 2 * teemate::PagePool::kMaxRegion));
  CHECK(base.frees == 2 && pool.counts().kept == 0);
  // A pooled region is never handed out executable, nor misaligned.
  void* r = pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kReadWrite);
  CHECK(pool.FreePages(r, kRegion));
  CHECK(pool.counts().kept == 1);
  void* x = pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kReadWriteExecute);
  CHECK(x != r && pool.counts().reused == 0);
  CHECK(pool.FreePages(x, kRegion));  // pooled: it is an ordinary region once freed
  CHECK(Perms(x) == "rw-p");          // and no longer executable
  // A pooled region serves only a request its address is aligned for.
  const size_t big_align = 64 * kRegion;
  for (int i = 0; i < 3; i++) {
    void* a = pool.AllocatePages(nullptr, kRegion, big_align, v8::PageAllocator::kNoAccess);
    CHECK(reinterpret_cast<uintptr_t>(a) % big_align == 0);
    CHECK(pool.FreePages(a, kRegion));
  }
  pool.Drain();
}

void TestBudgetAgesOutTheOldest() {
  MmapAllocator base;
  teemate::PagePool pool(&base, 3 * kRegion);
  std::vector<void*> rs;
  for (int i = 0; i < 5; i++) rs.push_back(pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kReadWrite));
  // An odd size that nobody asks for again, then regular pages after it.
  void* odd = pool.AllocatePages(nullptr, 56 * kPage, kPage, v8::PageAllocator::kReadWrite);
  CHECK(pool.FreePages(odd, 56 * kPage));
  for (void* r : rs) CHECK(pool.FreePages(r, kRegion));
  const auto c = pool.counts();
  CHECK(c.pooled_bytes <= 3 * kRegion);
  CHECK(c.pooled_bytes == 3 * kRegion);  // the odd one aged out
  CHECK(Perms(odd) == "");               // given back to the system
  CHECK(Perms(rs[4]) == "rw-p");         // the newest are kept
  // A budget of 0 keeps nothing.
  pool.SetBudget(0);
  CHECK(pool.counts().pooled_bytes == 0);
  void* r = pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kReadWrite);
  CHECK(pool.FreePages(r, kRegion));
  CHECK(pool.counts().pooled_bytes == 0);
}

void TestDrainIfIdle() {
  MmapAllocator base;
  teemate::PagePool pool(&base, 4 * kRegion);
  void* r = pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kReadWrite);
  CHECK(pool.FreePages(r, kRegion));
  pool.DrainIfIdle(std::chrono::seconds(10));  // just used: kept
  CHECK(pool.counts().pooled_bytes == kRegion);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  pool.DrainIfIdle(std::chrono::milliseconds(20));
  CHECK(pool.counts().pooled_bytes == 0);
}

// Slot threads and V8's helpers allocate and free at once: every region
// handed out must be zero and the budget must hold.
void TestConcurrent() {
  MmapAllocator base;
  teemate::PagePool pool(&base, 8 * kRegion);
  std::atomic<bool> dirty{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 200; i++) {
        std::vector<char*> mine;
        for (int k = 0; k < 3; k++) {
          auto* p = static_cast<char*>(pool.AllocatePages(nullptr, kRegion, kRegion, v8::PageAllocator::kReadWrite));
          if (!AllZero(p, kRegion)) dirty = true;
          std::memset(p + (i % 64) * kPage, 'A' + t, kPage);
          mine.push_back(p);
        }
        for (char* p : mine) pool.FreePages(p, kRegion);
      }
    });
  }
  for (auto& th : ts) th.join();
  CHECK(!dirty);
  const auto c = pool.counts();
  CHECK(c.pooled_bytes <= 8 * kRegion);
  CHECK(c.reused > 0);
  pool.Drain();
}

}  // namespace

int main() {
  TestReuseIsScrubbed();
  TestUncommitZeroesInPlace();
  TestWhatIsNotPooled();
  TestBudgetAgesOutTheOldest();
  TestDrainIfIdle();
  TestConcurrent();
  std::printf("page_pool_test: ok\n");
  return 0;
}
