#include "page_pool.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace teemate {

namespace {

// V8's own page size for mincore's vector and alignment checks.
constexpr size_t kSystemPage = 4096;

// The hooks V8 exports (v8/src/utils/allocation.h); looked up at run time so
// that a build without them loses only the pool.
constexpr const char kGetSymbol[] = "_ZN2v88internal24GetPlatformPageAllocatorEv";
constexpr const char kSetSymbol[] = "_ZN2v88internal34SetPlatformPageAllocatorForTestingEPNS_13PageAllocatorE";
using GetFn = v8::PageAllocator* (*)();
using SetFn = v8::PageAllocator* (*)(v8::PageAllocator*);

std::mutex g_install_mu;
PagePool* g_pool = nullptr;  // leaked on purpose: V8 holds it until the process ends

// A range of the sizes the pool keeps, in whole system pages.
bool Poolable(const void* address, size_t length) {
  return length >= PagePool::kMinRegion && length <= PagePool::kMaxRegion && length % kSystemPage == 0 &&
         reinterpret_cast<uintptr_t>(address) % kSystemPage == 0;
}

}  // namespace

PagePool::PagePool(v8::PageAllocator* base, size_t budget_bytes) : base_(base), budget_(budget_bytes) {}

PagePool* PagePool::Install(size_t budget_bytes, const char** why) {
  std::lock_guard<std::mutex> lock(g_install_mu);
  if (g_pool != nullptr) {
    g_pool->SetBudget(budget_bytes);
    return g_pool;
  }
  auto get = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, kGetSymbol));
  auto set = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, kSetSymbol));
  if (get == nullptr || set == nullptr) {
    *why = "this Node build does not export V8's platform page allocator hooks";
    return nullptr;
  }
  v8::PageAllocator* base = get();
  if (base == nullptr || base->CommitPageSize() != kSystemPage) {
    *why = "V8's page allocator is missing or does not use 4 KiB pages";
    return nullptr;
  }
  g_pool = new PagePool(base, budget_bytes);
  set(g_pool);
  return g_pool;
}

PagePool* PagePool::Installed() {
  std::lock_guard<std::mutex> lock(g_install_mu);
  return g_pool;
}

void* PagePool::AllocatePages(void* hint, size_t length, size_t alignment, Permission access) {
  if ((access == kNoAccess || access == kReadWrite) && length >= kMinRegion && length <= kMaxRegion) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = regions_.size(); i-- > 0;) {
      const Region r = regions_[i];
      if (r.length != length || (alignment != 0 && reinterpret_cast<uintptr_t>(r.address) % alignment != 0)) continue;
      // Pooled regions are readable-writable and zero, and go out as they are,
      // for a reservation (kNoAccess) too: V8 commits its heap pages whole, read
      // and write, right after reserving them, and changing the protection of
      // resident pages and back is what the pool would otherwise cost (Scrub).
      // The hint only ever asked for a random address, which the region's own
      // already is.
      regions_.erase(regions_.begin() + static_cast<std::ptrdiff_t>(i));
      counts_.pooled_bytes -= length;
      counts_.reused++;
      last_use_ = std::chrono::steady_clock::now();
      return r.address;
    }
  }
  return base_->AllocatePages(hint, length, alignment, access);
}

bool PagePool::FreePages(void* address, size_t length) {
  const bool poolable = Poolable(address, length);
  bool fits;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fits = poolable && length <= budget_;
  }
  size_t zeroed = 0;
  if (fits && Scrub(address, length, &zeroed)) {
    // Room is made by giving back the oldest regions: a size no isolate asks
    // for again (V8 trims some regions before freeing them) ages out instead
    // of filling the budget.
    std::vector<Region> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t drop = 0;
      while (drop < regions_.size() && counts_.pooled_bytes + length > budget_) {
        counts_.pooled_bytes -= regions_[drop].length;
        drop++;
      }
      if (counts_.pooled_bytes + length <= budget_) {
        evicted.assign(regions_.begin(), regions_.begin() + static_cast<std::ptrdiff_t>(drop));
        regions_.erase(regions_.begin(), regions_.begin() + static_cast<std::ptrdiff_t>(drop));
        regions_.push_back(Region{address, length});
        counts_.pooled_bytes += length;
        counts_.kept++;
        counts_.zeroed_bytes += zeroed;
        counts_.released += evicted.size();
        last_use_ = std::chrono::steady_clock::now();
        address = nullptr;
      } else {
        // The budget shrank under us: keep what is there, release this one.
        for (size_t i = 0; i < drop; i++) counts_.pooled_bytes += regions_[i].length;
      }
    }
    for (const Region& r : evicted) base_->FreePages(r.address, r.length);
    if (address == nullptr) return true;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    counts_.released++;
  }
  return base_->FreePages(address, length);
}

bool PagePool::SetPermissions(void* address, size_t length, Permission access) {
  // V8 uncommits a heap page it keeps for later (a semi-space page going back
  // to its own pool) by making it inaccessible, which the default allocator
  // follows with madvise(MADV_DONTNEED): its resident pages are dropped and the
  // next commit faults every one back in, 60-80 faults per isolate here, each a
  // hypervisor trip, besides the protection changes. A region of the sizes the
  // pool keeps is zeroed instead and stays resident and read-write: V8 reads
  // zeros after the next commit, as it does after MADV_DONTNEED, and the pages
  // go back to the system with the region (or through the pool's budget).
  if (access == kNoAccess && Poolable(address, length)) {
    size_t zeroed = 0;
    if (Scrub(address, length, &zeroed)) {
      std::lock_guard<std::mutex> lock(mu_);
      counts_.uncommits_kept++;
      return true;
    }
  }
  return base_->SetPermissions(address, length, access);
}

bool PagePool::Scrub(void* address, size_t length, size_t* zeroed) {
  // V8 may have left parts of it inaccessible (uncommitted, so not resident) or
  // executable; zeroing needs it writable, and it stays so. Where it is all
  // read-write already, as a heap page is, the kernel changes nothing.
  if (mprotect(address, length, PROT_READ | PROT_WRITE) != 0) return false;
  unsigned char resident[kMaxRegion / kSystemPage];
  const size_t pages = length / kSystemPage;
  auto* base = static_cast<unsigned char*>(address);
  if (mincore(address, length, resident) == 0) {
    // Only the resident pages hold anything; writing the others would fault
    // them in just to zero them.
    for (size_t i = 0; i < pages;) {
      if ((resident[i] & 1) == 0) {
        i++;
        continue;
      }
      size_t j = i;
      while (j < pages && (resident[j] & 1) != 0) j++;
      std::memset(base + i * kSystemPage, 0, (j - i) * kSystemPage);
      *zeroed += (j - i) * kSystemPage;
      i = j;
    }
  } else {
    std::memset(base, 0, length);  // no residency information: zero all of it
    *zeroed = length;
  }
  // Not made inaccessible while pooled: on a paravirtualised VM every page
  // table entry a protection change touches is a trip through the hypervisor,
  // and PROT_NONE here and read-write again at reuse cost a quarter of an
  // isolate's CPU (node-isolate-patch/README.md, "The page pool"). What it
  // guarded against is V8 itself touching memory it had freed; the isolate
  // that freed the region is gone, and what it left is zero.
  return true;
}

void PagePool::Drain() {
  std::vector<Region> regions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    regions.swap(regions_);
    for (const Region& r : regions) counts_.pooled_bytes -= r.length;
    counts_.released += regions.size();
  }
  for (const Region& r : regions) base_->FreePages(r.address, r.length);
}

void PagePool::DrainIfIdle(std::chrono::steady_clock::duration idle) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (regions_.empty() || std::chrono::steady_clock::now() - last_use_ < idle) return;
  }
  Drain();
}

void PagePool::SetBudget(size_t budget_bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    budget_ = budget_bytes;
    counts_.budget_bytes = budget_bytes;
    if (counts_.pooled_bytes <= budget_) return;
  }
  Drain();
}

PagePool::Counts PagePool::counts() {
  std::lock_guard<std::mutex> lock(mu_);
  Counts c = counts_;
  c.budget_bytes = budget_;
  return c;
}

}  // namespace teemate
