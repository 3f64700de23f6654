// RoIAlign, forward and backward, for float and double (torchvision's and
// detectron2's semantics; see pyfrcnn/ops/roi_align.py).
//
//   bottom_data  N x C x H x W
//   rois         R x 5: (batch_idx, x1, y1, x2, y2) in image pixels
//   top_data     R x C x ph x pw: the mean of each bin's bilinear samples
//
// One thread per output element, in a grid-stride loop. The backward adds
// each sample's share of the gradient to its four pixels with atomicAdd.
// The same source also builds as C++ under tests/ops/cuda_shim.h.

// The RoI of output element `index` in feature-map units.
template <typename T>
struct RoiAlignBin {
  int batch;
  int channel;
  T y0;  // top of the bin
  T x0;  // left of the bin
  T step_h;  // between samples
  T step_w;
  int grid_h;
  int grid_w;
  T count;
};

template <typename T>
__device__ RoiAlignBin<T> roi_align_bin(const int index, const T* rois, const T spatial_scale,
                                        const int channels, const int pooled_height,
                                        const int pooled_width, const int sampling_ratio,
                                        const int aligned) {
  const int pw = index % pooled_width;
  const int ph = (index / pooled_width) % pooled_height;
  const int c = (index / pooled_width / pooled_height) % channels;
  const int n = index / pooled_width / pooled_height / channels;
  const T* roi = rois + n * 5;
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  const T start_w = roi[1] * spatial_scale - offset;
  const T start_h = roi[2] * spatial_scale - offset;
  const T end_w = roi[3] * spatial_scale - offset;
  const T end_h = roi[4] * spatial_scale - offset;
  T roi_width = end_w - start_w;
  T roi_height = end_h - start_h;
  if (!aligned) {  // malformed RoIs become 1 x 1
    roi_width = roi_width < static_cast<T>(1) ? static_cast<T>(1) : roi_width;
    roi_height = roi_height < static_cast<T>(1) ? static_cast<T>(1) : roi_height;
  }
  const T bin_h = roi_height / static_cast<T>(pooled_height);
  const T bin_w = roi_width / static_cast<T>(pooled_width);
  RoiAlignBin<T> bin;
  bin.batch = static_cast<int>(roi[0]);
  bin.channel = c;
  // ceil(roi size / pooled size) samples when adaptive; none for a RoI of size <= 0.
  bin.grid_h = sampling_ratio > 0 ? sampling_ratio : max(static_cast<int>(ceil(bin_h)), 0);
  bin.grid_w = sampling_ratio > 0 ? sampling_ratio : max(static_cast<int>(ceil(bin_w)), 0);
  bin.count = static_cast<T>(max(bin.grid_h * bin.grid_w, 1));
  bin.y0 = start_h + static_cast<T>(ph) * bin_h;
  bin.x0 = start_w + static_cast<T>(pw) * bin_w;
  bin.step_h = bin_h;
  bin.step_w = bin_w;
  return bin;
}

// The sample's coordinate along one axis: its low and high neighbours and
// their weights; false when the sample lies off the map (it counts 0).
template <typename T>
__device__ bool roi_align_axis(T where, const int size, int* low, int* high, T* w_low, T* w_high) {
  if (where < static_cast<T>(-1) || where > static_cast<T>(size)) {
    return false;
  }
  if (where <= static_cast<T>(0)) {
    where = static_cast<T>(0);
  }
  *low = static_cast<int>(where);
  if (*low >= size - 1) {
    *low = *high = size - 1;
    where = static_cast<T>(*low);
  } else {
    *high = *low + 1;
  }
  const T frac = where - static_cast<T>(*low);
  *w_low = static_cast<T>(1) - frac;
  *w_high = frac;
  return true;
}

// The sample (iy, ix) of `bin`: its four pixels and weights, false if off the map.
template <typename T>
__device__ bool roi_align_sample(const RoiAlignBin<T>& bin, const int iy, const int ix,
                                 const int height, const int width, int* pixels, T* weights) {
  // start + i * bin + (k + 0.5) * bin / g, in torchvision's order of operations.
  const T y = bin.y0 + (static_cast<T>(iy) + static_cast<T>(0.5)) * bin.step_h /
                           static_cast<T>(bin.grid_h);
  const T x = bin.x0 + (static_cast<T>(ix) + static_cast<T>(0.5)) * bin.step_w /
                           static_cast<T>(bin.grid_w);
  // Both axes are tested first, as torchvision does, so an off-map sample reads nothing.
  if (y < static_cast<T>(-1) || y > static_cast<T>(height) || x < static_cast<T>(-1) ||
      x > static_cast<T>(width)) {
    return false;
  }
  int y_low, y_high, x_low, x_high;
  T hy, ly, hx, lx;
  roi_align_axis(y, height, &y_low, &y_high, &hy, &ly);
  roi_align_axis(x, width, &x_low, &x_high, &hx, &lx);
  pixels[0] = y_low * width + x_low;
  pixels[1] = y_low * width + x_high;
  pixels[2] = y_high * width + x_low;
  pixels[3] = y_high * width + x_high;
  weights[0] = hy * hx;
  weights[1] = hy * lx;
  weights[2] = ly * hx;
  weights[3] = ly * lx;
  return true;
}

template <typename T>
__device__ void roi_align_forward(const int nthreads, const T* bottom_data, const T spatial_scale,
                                  const int channels, const int height, const int width,
                                  const int pooled_height, const int pooled_width,
                                  const int sampling_ratio, const int aligned, const T* rois,
                                  T* top_data) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < nthreads;
       index += blockDim.x * gridDim.x) {
    const RoiAlignBin<T> bin = roi_align_bin(index, rois, spatial_scale, channels, pooled_height,
                                             pooled_width, sampling_ratio, aligned);
    const T* plane = bottom_data + (bin.batch * channels + bin.channel) * height * width;
    T sum = static_cast<T>(0);
    int pixels[4];
    T weights[4];
    for (int iy = 0; iy < bin.grid_h; ++iy) {
      for (int ix = 0; ix < bin.grid_w; ++ix) {
        if (!roi_align_sample(bin, iy, ix, height, width, pixels, weights)) {
          continue;
        }
        sum += weights[0] * plane[pixels[0]] + weights[1] * plane[pixels[1]] +
               weights[2] * plane[pixels[2]] + weights[3] * plane[pixels[3]];
      }
    }
    top_data[index] = sum / bin.count;
  }
}

template <typename T>
__device__ void roi_align_backward(const int nthreads, const T* top_diff, const T spatial_scale,
                                   const int channels, const int height, const int width,
                                   const int pooled_height, const int pooled_width,
                                   const int sampling_ratio, const int aligned, const T* rois,
                                   T* bottom_diff) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < nthreads;
       index += blockDim.x * gridDim.x) {
    const RoiAlignBin<T> bin = roi_align_bin(index, rois, spatial_scale, channels, pooled_height,
                                             pooled_width, sampling_ratio, aligned);
    T* plane = bottom_diff + (bin.batch * channels + bin.channel) * height * width;
    const T share = top_diff[index] / bin.count;
    int pixels[4];
    T weights[4];
    for (int iy = 0; iy < bin.grid_h; ++iy) {
      for (int ix = 0; ix < bin.grid_w; ++ix) {
        if (!roi_align_sample(bin, iy, ix, height, width, pixels, weights)) {
          continue;
        }
        for (int k = 0; k < 4; ++k) {
          atomicAdd(plane + pixels[k], share * weights[k]);
        }
      }
    }
  }
}

extern "C" __global__ void roi_align_forward_float(
    const int nthreads, const float* bottom_data, const float spatial_scale, const int channels,
    const int height, const int width, const int pooled_height, const int pooled_width,
    const int sampling_ratio, const int aligned, const float* rois, float* top_data) {
  roi_align_forward<float>(nthreads, bottom_data, spatial_scale, channels, height, width,
                           pooled_height, pooled_width, sampling_ratio, aligned, rois, top_data);
}

extern "C" __global__ void roi_align_forward_double(
    const int nthreads, const double* bottom_data, const double spatial_scale,
    const int channels, const int height, const int width, const int pooled_height,
    const int pooled_width, const int sampling_ratio, const int aligned, const double* rois,
    double* top_data) {
  roi_align_forward<double>(nthreads, bottom_data, spatial_scale, channels, height, width,
                            pooled_height, pooled_width, sampling_ratio, aligned, rois, top_data);
}

extern "C" __global__ void roi_align_backward_float(
    const int nthreads, const float* top_diff, const float spatial_scale, const int channels,
    const int height, const int width, const int pooled_height, const int pooled_width,
    const int sampling_ratio, const int aligned, const float* rois, float* bottom_diff) {
  roi_align_backward<float>(nthreads, top_diff, spatial_scale, channels, height, width,
                            pooled_height, pooled_width, sampling_ratio, aligned, rois,
                            bottom_diff);
}

extern "C" __global__ void roi_align_backward_double(
    const int nthreads, const double* top_diff, const double spatial_scale, const int channels,
    const int height, const int width, const int pooled_height, const int pooled_width,
    const int sampling_ratio, const int aligned, const double* rois, double* bottom_diff) {
  roi_align_backward<double>(nthreads, top_diff, spatial_scale, channels, height, width,
                             pooled_height, pooled_width, sampling_ratio, aligned, rois,
                             bottom_diff);
}
