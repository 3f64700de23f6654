// The suppression mask of greedy NMS, py-faster-rcnn's bitmask scheme, for
// float and double.
//
//   boxes  n x 4: (x1, y1, x2, y2), inclusive pixels, sorted by descending score
//   mask   n x ceil(n / 64) words: bit k of word w in row i is set when
//          j = 64 * w + k > i and IoU(i, j) > threshold
//
// Launch a (col_blocks, col_blocks) grid of 64-thread blocks: block (x, y)
// compares the 64 boxes of row block y with the 64 boxes of column block x,
// one row box per thread; blocks below the diagonal have nothing to do. The
// host then walks the mask once (greedy_sweep in pyfrcnn/ops/nms.py).
// The same source also builds as C++ under tests/ops/cuda_shim.h.

#define NMS_THREADS 64  // one bit per thread in an unsigned long long

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
