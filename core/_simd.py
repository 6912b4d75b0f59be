"""Vectors of LANES float64 for numba kernels (optional, imports numba): the lane axis of a kernel's
work arrays is their last, contiguous axis, and these functions load, combine and store it as one
LLVM vector, so that a kernel's loops compile to vector instructions without relying on LLVM's SLP
vectorizer (which packs scalar locals too, but its compile time grows steeply with their number).

    A = zeros_lanes(d0, d1)     # a (d0, d1, LANES) work array, each (i, j) one 64-byte line
    x = load(A, i, j)           # A[i, j, :] (A C-contiguous, A.shape[2] == LANES: not checked)
    store(A, i, j, x)           # A[i, j, :] = x
    store_at(a, k, x)           # a[k : k + LANES] = x (a 1-d C-contiguous, any k: not checked)
    load_at(a, k)               # a[k : k + LANES]
    fma(x, y, acc)              # x * y + acc, rounded once (as the FMA a matmul uses)
    fnma(x, y, acc)             # acc - x * y, rounded once
    add(x, y), sub(x, y), mul(x, y), div(x, y), sqrt(x), zeros(), splat(s), lane(x, q)
    absolute(x)                 # |x|
    maximum(x, y)               # Python's max(x, y) per lane: y if y > x else x
    floor(x)                    # rounded down per lane
    where_gt(x, y, a, b)        # a if x > y else b, per lane (b where either is NaN)
    pow2(k)                     # 2^k per lane for integral k in [-1022, 1023] (exact)

The arithmetic is IEEE per lane, exactly as the scalar code it replaces."""

# mypy: ignore-errors

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8
_VEC = ir.VectorType(ir.DoubleType(), LANES)
_FMA = f"llvm.fma.v{LANES}f64"


class Float64Lanes(types.Type):
    """LANES float64 held in one LLVM vector."""

    def __init__(self) -> None:
        super().__init__(name=f"Float64x{LANES}")


f64lanes = Float64Lanes()


@register_model(Float64Lanes)
class _Float64LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _lane_pointer(context, builder, aryty, ary, i, j):
    """Pointer to A[i, j, :] as a pointer to a vector: A is C-contiguous with LANES entries on its
    last axis, so the lanes of (i, j) start at element (i * A.shape[1] + j) * LANES (no strides
    to load and multiply)."""
    arr = context.make_array(aryty)(context, builder, ary)
    cols = cgutils.unpack_tuple(builder, arr.shape, 3)[1]
    flat = builder.mul(builder.add(builder.mul(i, cols), j), ir.Constant(i.type, LANES))
    return builder.bitcast(builder.gep(arr.data, [flat], inbounds=True), _VEC.as_pointer())


def _is_lanes_array(a) -> bool:
    return isinstance(a, types.Array) and a.ndim == 3 and a.layout == "C" and a.dtype == types.float64


@intrinsic
def load(typingctx, a, i, j):
    if not _is_lanes_array(a):
        return None
    sig = f64lanes(a, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        ii = context.cast(builder, args[1], sig.args[1], types.intp)
        jj = context.cast(builder, args[2], sig.args[2], types.intp)
        return builder.load(_lane_pointer(context, builder, sig.args[0], args[0], ii, jj), align=8)

    return sig, codegen


@intrinsic
def store(typingctx, a, i, j, x):
    if not (_is_lanes_array(a) and x == f64lanes):
        return None
    sig = types.void(a, types.intp, types.intp, f64lanes)

    def codegen(context, builder, sig, args):
        ii = context.cast(builder, args[1], sig.args[1], types.intp)
        jj = context.cast(builder, args[2], sig.args[2], types.intp)
        builder.store(args[3], _lane_pointer(context, builder, sig.args[0], args[0], ii, jj), align=8)
        return context.get_dummy_value()

    return sig, codegen


def _is_flat(a) -> bool:
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype == types.float64


@intrinsic
def load_at(typingctx, a, k):
    if not (_is_flat(a) and isinstance(k, types.Integer)):
        return None
    sig = f64lanes(a, types.intp)

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        kk = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(arr.data, [kk], inbounds=True), _VEC.as_pointer())
        return builder.load(ptr, align=8)

    return sig, codegen


@intrinsic
def store_at(typingctx, a, k, x):
    if not (_is_flat(a) and isinstance(k, types.Integer) and x == f64lanes):
        return None
    sig = types.void(a, types.intp, f64lanes)

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        kk = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(arr.data, [kk], inbounds=True), _VEC.as_pointer())
        builder.store(args[2], ptr, align=8)
        return context.get_dummy_value()

    return sig, codegen


def _fused(negate: bool):
    """fma (x y + acc) or, negate, fnma (acc - x y): llvm.fma, one rounding; -x is exact (also for
    signed zeros)."""

    @intrinsic
    def fused(typingctx, x, y, acc):
        if not (x == f64lanes and y == f64lanes and acc == f64lanes):
            return None

        def codegen(context, builder, sig, args):
            f = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3), _FMA)
            x = builder.fsub(ir.Constant(_VEC, [-0.0] * LANES), args[0]) if negate else args[0]
            return builder.call(f, [x, args[1], args[2]])

        return f64lanes(f64lanes, f64lanes, f64lanes), codegen

    return fused


fma = _fused(False)
fnma = _fused(True)


def _binary(op: str):
    @intrinsic
    def binary(typingctx, x, y):
        if not (x == f64lanes and y == f64lanes):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, op)(*args)

        return f64lanes(f64lanes, f64lanes), codegen

    return binary


add = _binary("fadd")
sub = _binary("fsub")
mul = _binary("fmul")
div = _binary("fdiv")


def _llvm_unary(name: str):
    @intrinsic
    def unary(typingctx, x):
        if x != f64lanes:
            return None

        def codegen(context, builder, sig, args):
            fn = ir.FunctionType(_VEC, [_VEC])
            return builder.call(cgutils.get_or_insert_function(builder.module, fn, f"llvm.{name}.v{LANES}f64"), args)

        return f64lanes(f64lanes), codegen

    return unary


absolute = _llvm_unary("fabs")
sqrt = _llvm_unary("sqrt")  # correctly rounded per lane, as np.sqrt
floor = _llvm_unary("floor")


@intrinsic
def where_gt(typingctx, x, y, a, b):
    if not (x == f64lanes and y == f64lanes and a == f64lanes and b == f64lanes):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[2], args[3])

    return f64lanes(f64lanes, f64lanes, f64lanes, f64lanes), codegen


@intrinsic
def pow2(typingctx, k):
    if k != f64lanes:
        return None

    def codegen(context, builder, sig, args):  # the exponent field of a double, built directly
        i64 = ir.VectorType(ir.IntType(64), LANES)
        bits = builder.add(builder.fptosi(args[0], i64), ir.Constant(i64, [1023] * LANES))
        return builder.bitcast(builder.shl(bits, ir.Constant(i64, [52] * LANES)), _VEC)

    return f64lanes(f64lanes), codegen


@intrinsic
def maximum(typingctx, x, y):
    if not (x == f64lanes and y == f64lanes):
        return None

    def codegen(context, builder, sig, args):
        x, y = args  # numba's max(x, y): select(y > x, y, x), so a NaN y gives x
        return builder.select(builder.fcmp_ordered(">", y, x), y, x)

    return f64lanes(f64lanes, f64lanes), codegen


@intrinsic
def zeros(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0.0] * LANES)

    return f64lanes(), codegen


@intrinsic
def splat(typingctx, s):
    if not isinstance(s, types.Float):
        return None
    sig = f64lanes(types.float64)

    def codegen(context, builder, sig, args):
        v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(
            v, ir.Constant(_VEC, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        )

    return sig, codegen


@intrinsic
def lane(typingctx, x, q):
    if not (x == f64lanes and isinstance(q, types.Integer)):
        return None
    sig = types.float64(f64lanes, q)

    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], args[1])

    return sig, codegen


@njit(cache=True, nogil=True)
def zeros_lanes(d0, d1):
    """A zero (d0, d1, LANES) array whose lane vectors each fill one 64-byte cache line: numba
    aligns arrays to 32 bytes, and a vector load that straddles two lines costs about two."""
    buf = np.zeros(d0 * d1 * LANES + LANES)
    off = (-(buf.ctypes.data // 8)) % LANES
    return buf[off : off + d0 * d1 * LANES].reshape((d0, d1, LANES))
