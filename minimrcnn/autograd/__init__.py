"""Reverse-mode autograd: Tensor, Function, no_grad, gradcheck and the gradcheck registry."""
from .tensor import Function, Tensor, as_tensor, enable_grad, is_grad_enabled, no_grad, sum_to
from .gradcheck import GradcheckError, GradcheckResult, gradcheck
from .registry import register_case

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "as_tensor",
           "sum_to", "gradcheck", "GradcheckError", "GradcheckResult", "register_case"]
