"""Build minimrcnn: the Python package plus the kernels in ext/ as minimrcnn._ext.*.

Every ext/NAME.pyx becomes the extension module minimrcnn._ext.NAME. OpenMP is used where the
compiler accepts -fopenmp (gcc, clang with libomp); elsewhere the kernels build serial.
Every ext/NAME.cu (CUDA source, compiled at run time by CuPy) is copied into the built package
as minimrcnn/_ext/NAME.cu, so that an installed minimrcnn finds it without the checkout.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py


def _compiles(flags, source="int main(void){return 0;}\n"):
    """Whether the C compiler (CC, else cc) builds ``source`` with ``flags``."""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write(source)
        try:
            return subprocess.run([cc, *flags, src, "-o", os.path.join(d, "t")],
                                  capture_output=True).returncode == 0
        except OSError:
            return False


def _has_openmp():
    if sys.platform == "win32":
        return True
    return _compiles(["-fopenmp"], "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")


# ext/winograd.pyx's transforms are loops over several arrays at once (tile positions of one
# plane of tiles each), which gcc vectorizes only after checking at run time that they do not
# overlap, and by default it gives up beyond 10 such checks: input_tiles' column pass (4 stores,
# 4 loads) then stayed scalar, and ran ~1.3x slower on wide images (100x100, 64 channels).
_VECTORIZE_FLAG = "--param=vect-max-version-for-alias-checks=100"


def extensions():
    omp = _has_openmp() and os.environ.get("MINIMRCNN_NO_OPENMP") != "1"
    vectorize = [_VECTORIZE_FLAG] if sys.platform != "win32" and _compiles(["-Werror", _VECTORIZE_FLAG]) else []
    compile_args = ["-O3"] + (["/openmp"] if sys.platform == "win32" else ["-fopenmp"] if omp else [])
    link_args = ["-fopenmp"] if omp and sys.platform != "win32" else []
    only = os.environ.get("MINIMRCNN_EXT")   # e.g. "conv,nms": build just these (development)
    exts = []
    for pyx in sorted(glob.glob(os.path.join("ext", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        if only and name not in only.split(","):
            continue
        exts.append(Extension(f"minimrcnn._ext.{name}", [pyx],
                              include_dirs=[np.get_include()],
                              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                              extra_compile_args=compile_args + (vectorize if name == "winograd" else []),
                              extra_link_args=link_args))
    return cythonize(exts, language_level=3, compile_time_env={"HAVE_OPENMP": omp},
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "initializedcheck": False})


class build_py_with_cuda_sources(build_py):
    """build_py, plus ext/*.cu copied into minimrcnn/_ext/ of the build (package data: a wheel
    has no ext/ folder; minimrcnn._ext.cuda_source_path looks in both places)."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "minimrcnn", "_ext")
        self.mkpath(target)
        for source in sorted(glob.glob(os.path.join("ext", "*.cu"))):
            self.copy_file(source, target)


setup(
    name="minimrcnn",
    version="0.1.0",
    description="Mask R-CNN from scratch on NumPy/CuPy, for teaching",
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["minimrcnn", "minimrcnn.*"]),
    ext_modules=extensions(),
    cmdclass={"build_py": build_py_with_cuda_sources},
    install_requires=["numpy>=1.24", "pycocotools>=2.0.7", "matplotlib>=3.7", "Pillow>=9.5",
                      "tqdm>=4.65"],
    extras_require={
        # cython + setuptools: tests/test_exercises.py builds a kernel in a student copy, as an
        # instructor's machine must (pip's isolated build env does not leave them installed)
        "test": ["pytest>=7", "nbclient>=0.9", "ipykernel>=6", "nbformat>=5", "cython>=3.0", "setuptools>=64"],
        "gpu": ["cupy-cuda12x>=13"],
        "parity": ["torchvision==0.29.2"],
    },
    entry_points={"console_scripts": ["minimrcnn=minimrcnn.__main__:main"]},
)
