// aligned_vector.hpp — std::vector storage aligned to a cache line. Weight rows are read with 64-byte vector loads
// (the AVX-512 GEMVs): from a plain vector (malloc: 16 bytes past a page for large blocks) every such load of a row
// whose length is a multiple of 64 bytes straddled two cache lines, and streaming a DRAM-resident matrix that way
// ran ~20 % slower than with aligned rows (measured: 0.5B lm_head, W8, one thread).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace qw {

template <class T, std::size_t A = 64>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() noexcept = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, A> &) noexcept {}
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, A>;
  };
  T *allocate(std::size_t n) { return static_cast<T *>(::operator new(n * sizeof(T), std::align_val_t(A))); }
  void deallocate(T *p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(A)); }
  template <class U>
  bool operator==(const AlignedAllocator<U, A> &) const noexcept { return true; }
  template <class U>
  bool operator!=(const AlignedAllocator<U, A> &) const noexcept { return false; }
};

template <class T>
using aligned_vector = std::vector<T, AlignedAllocator<T>>;

}  // namespace qw
