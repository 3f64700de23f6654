// Builds a .cu kernel source as plain C++ so that tests can run it on the CPU
// (g++ -x c++ -include cuda_shim.h -shared -fPIC). kernel_harness.py plays the
// CUDA runtime: for each block in turn it calls the kernel once per thread.
//
// - threadIdx/blockIdx are per OS thread, blockDim/gridDim per launch.
// - __shared__ becomes static: one copy, reused by the blocks, which run one
//   after another.
// - __syncthreads is a real barrier across the block's threads when the
//   harness runs them on OS threads of their own (shim_set_barrier(n)); in a
//   one-thread-at-a-time launch it is an error, reported by shim_error().
// - atomicAdd is a locked read-add-write.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

using std::ceil;
using std::floor;
using std::max;
using std::min;
using std::round;

struct dim3 {
  unsigned int x, y, z;
};

static thread_local dim3 threadIdx;
static thread_local dim3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;

namespace cuda_shim {

enum Error { kNone = 0, kSyncInSequentialLaunch = 1, kBarrierTimeout = 2 };

struct Barrier {
  std::mutex mutex;
  std::condition_variable changed;
  int parties = 0;  // 0: threads run one at a time
  int arrived = 0;
  unsigned long generation = 0;
  bool broken = false;
};

static Barrier barrier;
static std::mutex atomic_mutex;
static int error = kNone;

}  // namespace cuda_shim

inline void __syncthreads() {
  using namespace cuda_shim;
  std::unique_lock<std::mutex> lock(barrier.mutex);
  if (barrier.parties == 0) {
    error = kSyncInSequentialLaunch;
    return;
  }
  if (barrier.broken) {
    return;
  }
  const unsigned long generation = barrier.generation;
  if (++barrier.arrived == barrier.parties) {
    barrier.arrived = 0;
    ++barrier.generation;
    barrier.changed.notify_all();
    return;
  }
  // A thread that never arrives (a kernel that returns early in part of a
  // block) would hang the test: give up after a while and say so.
  if (!barrier.changed.wait_for(lock, std::chrono::seconds(10), [&] {
        return barrier.generation != generation || barrier.broken;
      })) {
    error = kBarrierTimeout;
    barrier.broken = true;
    barrier.changed.notify_all();
  }
}

template <typename T>
inline T atomicAdd(T* address, T value) {
  std::lock_guard<std::mutex> lock(cuda_shim::atomic_mutex);
  const T old = *address;
  *address = old + value;
  return old;
}

extern "C" {

void shim_set_launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                     unsigned bz) {
  gridDim = dim3{gx, gy, gz};
  blockDim = dim3{bx, by, bz};
  cuda_shim::error = cuda_shim::kNone;
}

// Threads that meet at __syncthreads: the block's size, or 0 when the
// harness calls the threads one at a time.
void shim_set_barrier(int parties) {
  std::lock_guard<std::mutex> lock(cuda_shim::barrier.mutex);
  cuda_shim::barrier.parties = parties;
  cuda_shim::barrier.arrived = 0;
  cuda_shim::barrier.broken = false;
}

void shim_set_thread(unsigned bx, unsigned by, unsigned bz, unsigned tx, unsigned ty,
                     unsigned tz) {
  blockIdx = dim3{bx, by, bz};
  threadIdx = dim3{tx, ty, tz};
}

int shim_error() { return cuda_shim::error; }

}  // extern "C"
