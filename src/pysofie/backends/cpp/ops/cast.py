"""Cast / CastLike generators. Low-precision types (float16, bfloat16, float8, float4, int4/uint4, int2/uint2)
are bit patterns in C++ and convert through runtime/pysofie_lowp.h, inlined only into models that need it."""
from __future__ import annotations

from ....ir import DType
from ..emitter import LOWP_OPS, generates
from .common import use_runtime_header

# pysofie_lp format of each low-precision float type / small integer type
LOWP_FLOATS = {
    DType.FLOAT16: "F16", DType.BFLOAT16: "BF16",
    DType.FLOAT8E4M3FN: "E4M3FN", DType.FLOAT8E4M3FNUZ: "E4M3FNUZ",
    DType.FLOAT8E5M2: "E5M2", DType.FLOAT8E5M2FNUZ: "E5M2FNUZ",
    DType.FLOAT4E2M1: "E2M1",
}
SMALL_INTS = {DType.INT4: "I4", DType.UINT4: "U4", DType.INT2: "I2", DType.UINT2: "U2"}
FLOAT8 = {DType.FLOAT8E4M3FN, DType.FLOAT8E4M3FNUZ, DType.FLOAT8E5M2, DType.FLOAT8E5M2FNUZ}

LOWP_OPS.update({"Cast", "CastLike"})


def use_lowp(cx) -> None:
    """Make pysofie_lowp.h part of the generated file (once)."""
    use_runtime_header(cx, "pysofie_lowp.h")


def _source(x: str, src: DType) -> tuple[str, str]:
    """C++ expression of an element's value and its kind ('float', 'int', 'bool')."""
    if src in LOWP_FLOATS:
        return f"pysofie_lp::{LOWP_FLOATS[src]}::decode({x})", "float"
    if src is DType.FLOAT8E8M0:
        return f"pysofie_lp::E8M0::decode({x})", "float"
    if src in SMALL_INTS:
        return f"pysofie_lp::{SMALL_INTS[src]}::decode({x})", "int"
    if src.is_float:
        return x, "float"
    if src is DType.BOOL:
        return x, "bool"
    return x, "int"


ROUND = {"up": 0, "down": 1, "nearest": 2}


def convert(x: str, src: DType, dst: DType, saturate: bool, round_mode: str = "up") -> str:
    """C++ expression converting element `x` of type src to type dst with ONNX Cast semantics."""
    if src is dst:
        return x
    if not src.is_lowp and not dst.is_lowp:
        return f"static_cast<{dst.ctype}>({x})"  # the standard conversions, as before
    v, kind = _source(x, src)
    if dst is DType.FLOAT8E8M0:  # from the float32 value, as onnx's reference
        return (f"static_cast<uint8_t>(pysofie_lp::E8M0::encode(static_cast<float>({v}), "
                f"{'true' if saturate else 'false'}, {ROUND[round_mode]}))")
    if dst in LOWP_FLOATS:
        sat = "true" if (saturate and dst in FLOAT8) else "false"
        return f"static_cast<{dst.ctype}>(pysofie_lp::{LOWP_FLOATS[dst]}::encode(static_cast<double>({v}), {sat}))"
    if dst in SMALL_INTS:
        f = SMALL_INTS[dst]
        if kind == "float":
            return f"pysofie_lp::{f}::from_float(static_cast<double>({v}))"
        return f"pysofie_lp::{f}::from_int({v})"
    return f"static_cast<{dst.ctype}>({v})"


def gen_convert(cx) -> None:
    src, dst = cx.vin(0).dtype, cx.vout(0).dtype
    w = cx.w
    if src is dst:
        w.line(f"std::copy_n({cx.i(0)}, {cx.size(0)}, {cx.o(0)});")
        return
    if src.is_lowp or dst.is_lowp:
        use_lowp(cx)
    saturate = bool(int(cx.op.saturate)) if cx.op.saturate is not None else True
    with w.loop("i", cx.size(0)):
        w.line(f"{cx.o(0)}[i] = {convert(f'{cx.i(0)}[i]', src, dst, saturate, cx.op.rounding())};")


generates("Cast", "CastLike")(gen_convert)
