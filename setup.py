from setuptools import find_packages, setup

setup(
    name="pyfrcnn",
    version="0.1.0",
    description="A Caffe-style, layer-by-layer graph engine on PyTorch for Faster R-CNN",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["pyfrcnn", "pyfrcnn.*", "layers", "layers.*"]),
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
    extras_require={
        "cuda": ["cupy>=12"],
        "coco": ["pycocotools>=2.0"],
        "plot": ["matplotlib>=3.5"],
        "dev": ["pytest>=7", "grpcio-tools==1.85.1"],
    },
    entry_points={
        "console_scripts": ["pyfrcnn = pyfrcnn.cli:main"],
        "pyfrcnn.plugins": ["faster_rcnn = layers"],
    },
)
