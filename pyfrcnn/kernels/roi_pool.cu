// Caffe's ROIPooling, forward and backward, for float and double.
//
//   bottom_data  N x C x H x W
//   rois         R x 5: (batch_idx, x1, y1, x2, y2) in image pixels, inclusive
//   top_data     R x C x ph x pw: the max of each bin, 0 for an empty bin
//   argmax       R x C x ph x pw: h * W + w of the max in its channel, -1 if none
//
// One thread per output element, in a grid-stride loop. The backward adds
// each output's gradient at its argmax with atomicAdd (RoIs overlap).
// The same source also builds as C++ under tests/ops/cuda_shim.h.

#define ROI_POOL_FLT_MAX 3.402823466e+38F

template <typename T>
__device__ void roi_pool_forward(const int nthreads, const T* bottom_data, const T spatial_scale,
                                 const int channels, const int height, const int width,
                                 const int pooled_height, const int pooled_width, const T* rois,
                                 T* top_data, int* argmax) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < nthreads;
       index += blockDim.x * gridDim.x) {
    const int pw = index % pooled_width;
    const int ph = (index / pooled_width) % pooled_height;
    const int c = (index / pooled_width / pooled_height) % channels;
    const int n = index / pooled_width / pooled_height / channels;

    const T* roi = rois + n * 5;
    const int batch = static_cast<int>(roi[0]);
    const int roi_start_w = static_cast<int>(round(roi[1] * spatial_scale));
    const int roi_start_h = static_cast<int>(round(roi[2] * spatial_scale));
    const int roi_end_w = static_cast<int>(round(roi[3] * spatial_scale));
    const int roi_end_h = static_cast<int>(round(roi[4] * spatial_scale));
    // A malformed RoI still covers one pixel.
    const int roi_width = max(roi_end_w - roi_start_w + 1, 1);
    const int roi_height = max(roi_end_h - roi_start_h + 1, 1);
    const T bin_size_h = static_cast<T>(roi_height) / static_cast<T>(pooled_height);
    const T bin_size_w = static_cast<T>(roi_width) / static_cast<T>(pooled_width);

    int hstart = static_cast<int>(floor(static_cast<T>(ph) * bin_size_h));
    int wstart = static_cast<int>(floor(static_cast<T>(pw) * bin_size_w));
    int hend = static_cast<int>(ceil(static_cast<T>(ph + 1) * bin_size_h));
    int wend = static_cast<int>(ceil(static_cast<T>(pw + 1) * bin_size_w));
    hstart = min(max(hstart + roi_start_h, 0), height);
    hend = min(max(hend + roi_start_h, 0), height);
    wstart = min(max(wstart + roi_start_w, 0), width);
    wend = min(max(wend + roi_start_w, 0), width);
    const bool is_empty = (hend <= hstart) || (wend <= wstart);

    T maxval = is_empty ? static_cast<T>(0) : static_cast<T>(-ROI_POOL_FLT_MAX);
    int maxidx = -1;
    const T* plane = bottom_data + (batch * channels + c) * height * width;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        const int bottom_index = h * width + w;
        // Strictly greater: among equal values the first one scanned wins.
        if (plane[bottom_index] > maxval) {
          maxval = plane[bottom_index];
          maxidx = bottom_index;
        }
      }
    }
    top_data[index] = maxval;
    argmax[index] = maxidx;
  }
}

template <typename T>
__device__ void roi_pool_backward(const int nthreads, const T* top_diff, const int* argmax,
                                  const T* rois, const int channels, const int height,
                                  const int width, const int pooled_height,
                                  const int pooled_width, T* bottom_diff) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < nthreads;
       index += blockDim.x * gridDim.x) {
    const int c = (index / pooled_width / pooled_height) % channels;
    const int n = index / pooled_width / pooled_height / channels;
    const int bottom_index = argmax[index];
    if (bottom_index < 0) {
      continue;
    }
    const int batch = static_cast<int>(rois[n * 5]);
    atomicAdd(bottom_diff + (batch * channels + c) * height * width + bottom_index,
              top_diff[index]);
  }
}

extern "C" __global__ void roi_pool_forward_float(
    const int nthreads, const float* bottom_data, const float spatial_scale, const int channels,
    const int height, const int width, const int pooled_height, const int pooled_width,
    const float* rois, float* top_data, int* argmax) {
  roi_pool_forward<float>(nthreads, bottom_data, spatial_scale, channels, height, width,
                          pooled_height, pooled_width, rois, top_data, argmax);
}

extern "C" __global__ void roi_pool_forward_double(
    const int nthreads, const double* bottom_data, const double spatial_scale,
    const int channels, const int height, const int width, const int pooled_height,
    const int pooled_width, const double* rois, double* top_data, int* argmax) {
  roi_pool_forward<double>(nthreads, bottom_data, spatial_scale, channels, height, width,
                           pooled_height, pooled_width, rois, top_data, argmax);
}

extern "C" __global__ void roi_pool_backward_float(
    const int nthreads, const float* top_diff, const int* argmax, const float* rois,
    const int channels, const int height, const int width, const int pooled_height,
    const int pooled_width, float* bottom_diff) {
  roi_pool_backward<float>(nthreads, top_diff, argmax, rois, channels, height, width,
                           pooled_height, pooled_width, bottom_diff);
}

extern "C" __global__ void roi_pool_backward_double(
    const int nthreads, const double* top_diff, const int* argmax, const double* rois,
    const int channels, const int height, const int width, const int pooled_height,
    const int pooled_width, double* bottom_diff) {
  roi_pool_backward<double>(nthreads, top_diff, argmax, rois, channels, height, width,
                            pooled_height, pooled_width, bottom_diff);
}
