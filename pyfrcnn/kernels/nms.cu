// The suppression mask of greedy NMS, py-faster-rcnn's bitmask scheme, for
// float and double.
//
//   boxes  n x 4: (x1, y1, x2, y2), inclusive pixels, sorted by descending score
//   mask   n x ceil(n / 64) words: bit k of word w in row i is set when
//          j = 64 * w + k > i and IoU(i, j) > threshold
//
// Launch a (col_blocks, col_blocks) grid of 64-thread blocks: block (x, y)
// compares the 64 boxes of row block y with the 64 boxes of column block x,
// one row box per thread; blocks below the diagonal have nothing to do.
// nms_keep then walks the mask once on the device, as greedy_sweep in
// pyfrcnn/ops/nms.py does on the host, so the mask never leaves the GPU.
// The same source also builds as C++ under tests/ops/cuda_shim.h.

#define NMS_THREADS 64  // one bit per thread in an unsigned long long
// Mask words per row that nms_keep holds in shared memory (32 KB): up to
// 262144 boxes. pyfrcnn/ops/_cuda.py sweeps larger masks on the host.
#define NMS_KEEP_MAX_WORDS 4096

// IoU as pyfrcnn/ops/nms.py computes it, operation for operation.
template <typename T>
__device__ inline bool nms_overlaps(const T* a, const T* b, const T threshold) {
  const T left = a[0] > b[0] ? a[0] : b[0];
  const T top = a[1] > b[1] ? a[1] : b[1];
  const T right = a[2] < b[2] ? a[2] : b[2];
  const T bottom = a[3] < b[3] ? a[3] : b[3];
  T width = right - left + 1;
  T height = bottom - top + 1;
  width = width > 0 ? width : static_cast<T>(0);
  height = height > 0 ? height : static_cast<T>(0);
  const T inter = width * height;
  const T area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1);
  const T area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1);
  return inter / (area_a + area_b - inter) > threshold;
}

template <typename T>
__device__ void nms_mask(const int n_boxes, const T threshold, const T* boxes,
                         unsigned long long* mask) {
  const int row_block = blockIdx.y;
  const int col_block = blockIdx.x;
  if (row_block > col_block) {
    return;  // the whole block leaves, so no thread waits at the barrier below
  }
  const int row_size = min(n_boxes - row_block * NMS_THREADS, NMS_THREADS);
  const int col_size = min(n_boxes - col_block * NMS_THREADS, NMS_THREADS);

  __shared__ T col_boxes[NMS_THREADS * 4];
  if (threadIdx.x < col_size) {
    const T* box = boxes + (col_block * NMS_THREADS + threadIdx.x) * 4;
    for (int k = 0; k < 4; ++k) {
      col_boxes[threadIdx.x * 4 + k] = box[k];
    }
  }
  __syncthreads();

  if (threadIdx.x < row_size) {
    const int i = row_block * NMS_THREADS + threadIdx.x;
    const T* box = boxes + i * 4;
    unsigned long long bits = 0;
    // On the diagonal only later boxes count.
    for (int k = row_block == col_block ? threadIdx.x + 1 : 0; k < col_size; ++k) {
      if (nms_overlaps(box, col_boxes + k * 4, threshold)) {
        bits |= 1ULL << k;
      }
    }
    const int col_blocks = (n_boxes + NMS_THREADS - 1) / NMS_THREADS;
    mask[i * col_blocks + col_block] = bits;
  }
}

extern "C" __global__ void nms_mask_float(const int n_boxes, const float threshold,
                                          const float* boxes, unsigned long long* mask) {
  nms_mask<float>(n_boxes, threshold, boxes, mask);
}

extern "C" __global__ void nms_mask_double(const int n_boxes, const double threshold,
                                           const double* boxes, unsigned long long* mask) {
  nms_mask<double>(n_boxes, threshold, boxes, mask);
}

// The greedy sweep of the mask in one block: keep[i] = 1 when box i (in
// sorted order) survives. Boxes are visited in order; a kept box ORs its row
// into `removed`. Every thread makes the same decisions (each keeps the
// current word's bits in a register), so all of them reach each barrier.
// A kept box writes only the words after the current one, and each write is
// followed by a barrier before any thread reads that word: no races.
//
// Launch one block of min(words, 256) threads (words = ceil(n / 64)).
extern "C" __global__ void nms_keep(const int n_boxes, const unsigned long long* mask,
                                    unsigned char* keep) {
  __shared__ unsigned long long removed[NMS_KEEP_MAX_WORDS];
  const int words = (n_boxes + NMS_THREADS - 1) / NMS_THREADS;
  for (int w = threadIdx.x; w < words; w += blockDim.x) {
    removed[w] = 0;
  }
  __syncthreads();
  for (int word = 0; word < words; ++word) {
    unsigned long long gone = removed[word];
    const int start = word * NMS_THREADS;
    const int count = min(n_boxes - start, NMS_THREADS);
    for (int bit = 0; bit < count; ++bit) {
      const int i = start + bit;
      const bool kept = !((gone >> bit) & 1ULL);
      if (threadIdx.x == 0) {
        keep[i] = kept ? 1 : 0;
      }
      if (kept) {
        const unsigned long long* row = mask + static_cast<long long>(i) * words;
        gone |= row[word];
        for (int w = word + 1 + threadIdx.x; w < words; w += blockDim.x) {
          removed[w] |= row[w];
        }
        __syncthreads();
      }
    }
  }
}
