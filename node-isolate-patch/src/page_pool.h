// Trusted (inside the enclave): recycled heap pages for the next isolate.
//
// Every activation's isolate deserialises Node's snapshot into fresh heap
// pages and frees them at teardown. The kernel hands each fresh page out on
// first touch, one page fault per 4 KiB: on this kind of VM a fifth of the
// owner's CPU. The pool keeps the pages a torn-down isolate frees, zeroed, and
// hands them to the next isolate that asks for a region of the same size,
// already resident: no fault, no munmap/mmap.
//
// Nothing of one isolate reaches the next: a region is zeroed (every resident
// page; the others read as zero anyway) when it is freed, before it can be
// handed out again, exactly what a fresh mmap gives. It stays readable and
// writable while pooled and when handed out, also for a reservation: changing
// the protection of resident pages is a hypervisor trip per page table entry
// on this kind of VM (see Scrub). Only regions of heap-page sizes are kept,
// never executable, up to a byte budget; the rest go straight back to the
// system.
//
// V8 takes its page allocator from the platform, which Node fixes at start-up
// (no page allocator of its own, so V8's default); the pool is put in front of
// that default with V8's exported SetPlatformPageAllocatorForTesting, found at
// run time, so a Node build without it only loses the pool. Isolates made
// before Install (the owner's own) keep the default; freeing their pages
// through the pool is harmless (both are plain mmap regions). The SGX Node
// build's entry point can install the same pool at its runtime init (not in
// the patch series yet: node-isolate-patch/README.md, "The page pool").
#ifndef TEEMATE_PAGE_POOL_H_
#define TEEMATE_PAGE_POOL_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include <v8-platform.h>

namespace teemate {

class PagePool final : public v8::PageAllocator {
 public:
  // Regions of these sizes are kept: V8's regular heap page (256 KiB) up to
  // a few of them; large-object pages and the code range are not.
  static constexpr size_t kMinRegion = 64 * 1024;
  static constexpr size_t kMaxRegion = 1024 * 1024;

  // Counters for the stats and tests.
  struct Counts {
    uint64_t reused = 0;     // regions handed out again
    uint64_t kept = 0;       // regions taken into the pool on free
    uint64_t released = 0;   // regions given back to the system (budget, size, drain)
    uint64_t zeroed_bytes = 0;  // resident bytes zeroed on keep (what reuse saves faulting in)
    uint64_t uncommits_kept = 0;  // uncommits (SetPermissions kNoAccess) zeroed in place, not dropped
    size_t pooled_bytes = 0;  // bytes in the pool now
    size_t budget_bytes = 0;
  };

  PagePool(v8::PageAllocator* base, size_t budget_bytes);

  // Puts a pool with budget_bytes in front of V8's platform page allocator,
  // once per process; a later call only changes the budget. Returns the pool,
  // or nullptr when this Node build does not export the hook (*why says so).
  static PagePool* Install(size_t budget_bytes, const char** why);
  // The installed pool, or nullptr.
  static PagePool* Installed();

  // Gives every pooled region back to the system (an idle owner holds none).
  void Drain();
  // Drain, unless some isolate allocated or freed pages in the last `idle`:
  // the slots share the pool, and one slot going idle says nothing of the rest.
  void DrainIfIdle(std::chrono::steady_clock::duration idle);
  void SetBudget(size_t budget_bytes);
  Counts counts();

  size_t AllocatePageSize() override { return base_->AllocatePageSize(); }
  size_t CommitPageSize() override { return base_->CommitPageSize(); }
  void SetRandomMmapSeed(int64_t seed) override { base_->SetRandomMmapSeed(seed); }
  void* GetRandomMmapAddr() override { return base_->GetRandomMmapAddr(); }
  void* AllocatePages(void* hint, size_t length, size_t alignment, Permission access) override;
  bool FreePages(void* address, size_t length) override;
  bool ReleasePages(void* address, size_t length, size_t new_length) override {
    return base_->ReleasePages(address, length, new_length);
  }
  bool SetPermissions(void* address, size_t length, Permission access) override;
  bool RecommitPages(void* address, size_t length, Permission access) override {
    return base_->RecommitPages(address, length, access);
  }
  bool DiscardSystemPages(void* address, size_t size) override {
    return base_->DiscardSystemPages(address, size);
  }
  bool DecommitPages(void* address, size_t size) override { return base_->DecommitPages(address, size); }
  bool ReserveForSharedMemoryMapping(void* address, size_t size) override {
    return base_->ReserveForSharedMemoryMapping(address, size);
  }
  std::unique_ptr<SharedMemory> AllocateSharedPages(size_t length, const void* original_address) override {
    return base_->AllocateSharedPages(length, original_address);
  }
  bool CanAllocateSharedPages() override { return base_->CanAllocateSharedPages(); }

 private:
  struct Region {
    void* address;
    size_t length;
  };
  // Makes [address, address+length) read-write and zeroes its resident pages;
  // false if that failed (the region must not be reused).
  static bool Scrub(void* address, size_t length, size_t* zeroed);

  v8::PageAllocator* const base_;
  std::mutex mu_;
  std::vector<Region> regions_;  // LIFO: the most recently freed is the warmest
  size_t budget_ = 0;
  Counts counts_;
  std::chrono::steady_clock::time_point last_use_{};  // last reuse or keep
};

}  // namespace teemate

#endif  // TEEMATE_PAGE_POOL_H_
