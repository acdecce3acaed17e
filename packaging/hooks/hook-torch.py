"""What Lightbox's bundle takes from torch: its runtime, not its tests, headers or tools.

Replaces the contributed hook, which also collects torch's test suites, C++ headers, test
binaries and test libraries: a couple of hundred megabytes that a viewer that runs exported
models on the CPU never loads. The smoke test (tests/packaging/) runs every explanation method
in the built app, so a part that is missing shows up there.
"""

from pathlib import Path

from PyInstaller.utils.hooks import (
                                     PY_DYLIB_PATTERNS,
                                     collect_data_files,
                                     collect_dynamic_libs,
                                     collect_submodules,
                                     get_package_paths,
)

# torch reads its own sources at run time (inspect, torch.export's serializer), so keep the .py files.
module_collection_mode = "pyz+py"
warn_on_missing_hiddenimports = False

# torch imports much of itself by name (torch.export's loader, dynamo's polyfills), out of the
# import graph's sight, so take its modules whole, less the parts a viewer never runs.
_NEVER_RUN = ("torch.testing._internal", "torch.utils.tensorboard", "torch.onnx", "torch.utils.benchmark",
              "torch.utils.bottleneck", "torch.contrib")
hiddenimports = collect_submodules("torch", filter=lambda name: not name.startswith(_NEVER_RUN))

datas = collect_data_files(
    "torch",
    excludes=["**/*.h", "**/*.hpp", "**/*.cuh", "**/*.cpp", "**/*.pyi", "**/*.cmake", "**/*.a",
              "include", "test", "bin", "share", "_inductor", "testing"],
)
# The C++ test and custom-op libraries beside the runtime are never loaded by torch itself.
_TEST_LIBRARIES = ("libjitbackend_test", "libtorchbind_test", "libaoti_custom_ops", "libbackend_with_compiler")
binaries = [
    (source, destination)
    for source, destination in collect_dynamic_libs("torch", search_patterns=PY_DYLIB_PATTERNS + ["*.so.*"])
    if not any(name in source for name in _TEST_LIBRARIES)
]
# torch checks at import that its shared-memory helper exists, the one tool of bin/ it needs.
binaries.append((str(Path(get_package_paths("torch")[1]) / "bin" / "torch_shm_manager"), "torch/bin"))

# The CUDA build (scripts/build_app --cuda) loads CUDA, cuDNN and cuBLAS from the nvidia-* packages
# it requires, partly with dlopen, out of the import graph's sight. As the contributed hook does,
# name those packages as imports so that their own hooks collect the libraries; the CPU build
# requires none, so this adds nothing to it.
def _nvidia_packages() -> list[str]:
    from importlib.metadata import distribution

    from _pyinstaller_hooks_contrib.utils.nvidia_cuda import infer_hiddenimports_from_requirements
    from packaging.requirements import Requirement

    requirements = [Requirement(line) for line in distribution("torch").requires or []]
    return infer_hiddenimports_from_requirements(
        [requirement.name for requirement in requirements if requirement.marker is None or requirement.marker.evaluate()])


hiddenimports += _nvidia_packages()
# Symbolic links from the top-level folder to torch/lib confuse torch's search for its libraries.
bindepend_symlink_suppression = ["**/torch/lib/*.so*"]
