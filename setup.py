from setuptools import find_packages, setup

setup(
    name="pyfrcnn",
    version="0.1.0",
    description="A Caffe-style, layer-by-layer graph engine on PyTorch for Faster R-CNN",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # The Faster R-CNN layers live in layers/ and install as `pyfrcnn_layers`, a name
    # that a user's own layers.py or layers/ cannot shadow (prototxts keep writing
    # `layers.roi_data` and py-faster-rcnn's module names: aliases, layers/__init__.py).
    packages=find_packages(include=["pyfrcnn", "pyfrcnn.*"])
    + ["pyfrcnn_layers" + p[len("layers"):] for p in find_packages(include=["layers", "layers.*"])],
    package_dir={"pyfrcnn_layers": "layers"},
    package_data={"pyfrcnn": ["proto/*.proto", "kernels/*.cu"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.0",
        "numpy>=1.22",
        "protobuf>=7.35.1",  # the version that generated pyfrcnn/proto/pyfrcnn_pb2.py
        "pyyaml>=5.4",
        "pillow>=9.0",
        "tqdm>=4.60",  # the progress bars of solve, test, data check
    ],
    # What the code uses when it is installed (README, "Optional extras"):
    extras_require={
        "cuda": ["cupy>=12"],                 # RoI pooling and NMS kernels on the GPU
        "coco": ["pycocotools>=2.0"],         # COCO datasets and the COCO metric
        "plot": ["matplotlib>=3.5"],          # pyfrcnn plot
        "tensorboard": ["tensorboard>=2.10"],  # TensorBoard scalars in the run folder
        "all": ["cupy>=12", "pycocotools>=2.0", "matplotlib>=3.5", "tensorboard>=2.10"],
        # `pyfrcnn export --onnx` and running its outputs (OpenCV < 5 reads Caffe nets)
        "export": ["onnx>=1.16", "onnxruntime>=1.17", "opencv-python-headless>=4.5,<5"],
        "dev": ["pytest>=7", "grpcio-tools==1.85.1", "opencv-python-headless>=4.5,<5"],
    },
    entry_points={
        "console_scripts": ["pyfrcnn = pyfrcnn.cli:main"],
        "pyfrcnn.plugins": ["faster_rcnn = pyfrcnn_layers"],
    },
)
