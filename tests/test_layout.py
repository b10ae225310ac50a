"""The package's layering, read from the source: dependencies point down
(backend <- autograd <- functional <- nn <- ops / modeling <- models), and the compiled kernels
are found through minimrcnn._ext's loader only."""
import ast
from pathlib import Path

import pytest

import minimrcnn
from minimrcnn import _ext

PACKAGE = Path(minimrcnn.__file__).parent

# what each layer may import from inside minimrcnn (its first name below "minimrcnn.")
ALLOWED = {
    "autograd": {"backend", "autograd"},
    "functional": {"backend", "checks", "_ext", "autograd", "functional"},
    "nn": {"backend", "checks", "autograd", "functional", "nn"},
    "optim": {"backend", "checks", "autograd", "nn", "optim"},
    "ops": {"backend", "checks", "_ext", "autograd", "functional", "ops"},
    "modeling": {"backend", "checks", "autograd", "functional", "nn", "ops", "modeling", "weights"},
}


def _imports(path):
    """(line, minimrcnn module) of every import in ``path``, except inside a module-level
    ``__getattr__`` (the lazy aliases that keep a moved name importable from its old home)."""
    tree = ast.parse(path.read_text())
    package = ["minimrcnn", *path.relative_to(PACKAGE).parent.parts]
    skipped = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
               for n in ast.walk(f)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                if node.module:
                    yield node.lineno, module, alias.name
                else:                                   # from .. import ops: the module minimrcnn.ops
                    yield node.lineno, f"{module}.{alias.name}", None
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_dependencies_point_down(layer):
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, module, _ in _imports(path):
            parts = module.split(".")
            if parts[0] == "minimrcnn" and len(parts) > 1 and parts[1] not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_compiled_kernels_are_loaded_by_the_one_loader():
    """No module imports minimrcnn._ext.<kernel> itself or reads ext/ (the loader knows where
    the CUDA sources are, in a checkout and in an installed package)."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE / "_ext":
            continue
        text = path.read_text()
        if '"ext"' in text or "'ext'" in text or ".cu\"" in text:
            wrong.append(f"{path.relative_to(PACKAGE)} names the ext folder or a .cu file")
        for line, module, name in _imports(path):
            if module.startswith("minimrcnn._ext.") or (module == "minimrcnn._ext" and name not in
                                                          (None, *_ext.__all__)):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module} {name or ''}")
    assert not wrong, "\n".join(wrong)


def test_every_cuda_source_and_kernel_module_is_found():
    ext_dir = PACKAGE.parent / "ext"
    names = sorted(p.stem for p in ext_dir.glob("*.cu"))
    assert names == ["nms", "roi_align", "roi_pool"]
    for name in names:
        assert _ext.cuda_source_path(name).read_text() == (ext_dir / f"{name}.cu").read_text()
    for pyx in sorted(ext_dir.glob("*.pyx")):
        assert _ext.cpu_module(pyx.stem) is not None, f"minimrcnn._ext.{pyx.stem} is not built"
    with pytest.raises(RuntimeError, match="no_such_kernel.cu is missing"):
        _ext.cuda_source_path("no_such_kernel")


def test_moved_builders_still_import_from_their_old_homes():
    """Every config -> module builder lives in minimrcnn.models; the names they had before still
    import (the parity tests and older notebooks use them)."""
    from minimrcnn import models
    from minimrcnn.modeling import backbone, mask_rcnn, roi_heads
    for module, names in ((backbone, ("build_backbone", "build_res5_head", "build_resnet_body")),
                          (mask_rcnn, ("build_transform", "build_rpn")), (roi_heads, ("build_roi_heads",))):
        for name in names:
            assert getattr(module, name) is getattr(models, name)
        with pytest.raises(AttributeError):
            module.no_such_builder
