"""What machine a benchmark ran on, for BENCHMARKS.md."""

import platform


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def optional_torchvision(wanted):
    """torchvision when `wanted` and importable (else None, said once), and the
    header line of a comparison: CPU, torch threads, versions."""
    import torch

    torchvision = None
    if wanted:
        try:
            import torchvision
        except ImportError:
            print("torchvision is not importable: timing pyfrcnn only")
    print(f"{cpu_model()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
          + (f", torchvision {torchvision.__version__}" if torchvision else ""))
    return torchvision
