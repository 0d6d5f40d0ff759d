"""Peter Jäckel's "Let's Be Rational" implied-volatility algorithm, compiled with numba.

The algorithm is Jäckel's: P. Jäckel, "Let's Be Rational", Wilmott (2015) 2015(75), 40-53
(www.jaeckel.org). This is an independent numba implementation written for amcp; constants,
regions and branches follow Jäckel's reference code as ported to Python (MIT licence) in
``py_lets_be_rational``, with two changes: the lower map's ``Φ`` and ``Φ/φ`` come from one
``erfcx`` (two exponentials instead of five), and ``b`` and ``∂b/∂s`` share their exponential.

Everything here works on the *normalised* Black function of a call on the out-of-the-money
side. With ``x = ln(F/K) ≤ 0`` and ``s = σ√T`` (total volatility)::

    b(x, s) = Φ(x/s + s/2)·e^(x/2) - Φ(x/s - s/2)·e^(-x/2)        0 ≤ b < b_max = e^(x/2)

is the undiscounted call price divided by ``√(F·K)``. :func:`normalised_black_and_vega_otm` evaluates it
to (nearly) full double precision in four regions (an asymptotic expansion for large negative
``x/s``, a small-``s`` expansion, the plain formula when the first term dominates, and a form
with the scaled complementary error function otherwise). :func:`normalised_implied_volatility`
inverts it: a four-branch rational initial guess (lower map, two rational cubic middle
segments, upper map) followed by at most two Householder(3) steps on a branch-specific
objective, which reaches the root to within a few ulp.

Private: the public face is :mod:`amcp.options.implied_vol`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_DBL_EPSILON = float(np.finfo(np.float64).eps)
_DBL_MIN = float(np.finfo(np.float64).tiny)
_DBL_MAX = float(np.finfo(np.float64).max)
_SQRT_DBL_MAX = math.sqrt(_DBL_MAX)
_SQRT_DBL_MIN = math.sqrt(_DBL_MIN)
_FOURTH_ROOT_DBL_EPSILON = _DBL_EPSILON**0.25
_SIXTEENTH_ROOT_DBL_EPSILON = _DBL_EPSILON**0.0625

_ONE_OVER_SQRT_TWO = 0.7071067811865475244008443621048490392848359376887
_ONE_OVER_SQRT_TWO_PI = 0.3989422804014326779399460599343818684758586311649
_SQRT_TWO_PI = 2.506628274631000502415765284811045253006986740610
_TWO_PI = 6.283185307179586476925286766559005768394338798750
_SQRT_PI_OVER_TWO = 1.253314137315500251207882642405522626503493370305
_SQRT_THREE = 1.732050807568877293527446341505872366942805253810
_SQRT_ONE_OVER_THREE = 0.577350269189625764509148780501957455647601751270
_TWO_PI_OVER_SQRT_TWENTY_SEVEN = 1.209199576156145233729385505094770488189377498728
_PI_OVER_SIX = 0.523598775598298873077107230546583814032861566563

MAX_HOUSEHOLDER_STEPS = 2
"""Householder(3) steps after the initial guess (Jäckel: two reach machine precision)."""

_ASYMPTOTIC_THRESHOLD = -10.0  # η: use the asymptotic expansion where h = x/s < η ...
_SMALL_T_THRESHOLD = 2.0 * _SIXTEENTH_ROOT_DBL_EPSILON  # ... and t = s/2 < τ + |h| - |η|

_NORM_CDF_ASYMPTOTIC_FIRST = -10.0
_NORM_CDF_ASYMPTOTIC_SECOND = -1.0 / math.sqrt(_DBL_EPSILON)

_RATIONAL_CUBIC_MIN_R = -(1.0 - math.sqrt(_DBL_EPSILON))
_RATIONAL_CUBIC_MAX_R = 2.0 / (_DBL_EPSILON * _DBL_EPSILON)


def _asymptotic_coefficients(order: int = 17) -> np.ndarray:
    """Coefficients of the asymptotic expansion of ``A(h, t)`` (see :func:`_asymptotic_bracket`).

    ``A = 2 + q·(P₁(e) + 3q·(P₂(e) + 5q·(P₃(e) + …)))`` with
    ``P_k(e) = (-1)^k · 2 · Σ_j C(2k+1, 2j+1)·e^j``; row ``k-1`` holds ``P_k``'s coefficients,
    highest power of ``e`` first (for Horner), zero-padded on the left.
    """
    table = np.zeros((order, order + 1))
    for k in range(1, order + 1):
        coefficients = [(-1) ** k * 2 * math.comb(2 * k + 1, 2 * j + 1) for j in range(k + 1)]
        table[k - 1, order - k :] = coefficients[::-1]
    return table


_ASYMPTOTIC_TABLE = _asymptotic_coefficients()
_ASYMPTOTIC_ORDER = _ASYMPTOTIC_TABLE.shape[0]

# W. J. Cody (1969), rational Chebyshev approximations of erf, erfc and erfcx.
_CODY_A = (
    3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947, 0.185777706184603153,
)  # fmt: skip
_CODY_B = (23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062)
_CODY_C = (
    0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131, 881.95222124176909,
    1712.04761263407058, 2051.07837782607147, 1230.33935479799725, 2.15311535474403846e-8,
)  # fmt: skip
_CODY_D = (
    15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019, 3290.79923573345963,
    4362.61909014324716, 3439.36767414372164, 1230.33935480374942,
)  # fmt: skip
_CODY_P = (
    0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766,
    6.58749161529837803e-4, 0.0163153871373020978,
)  # fmt: skip
_CODY_Q = (
    2.56852019228982242, 1.87295284992346047, 0.527905102951428412, 0.0605183413124413191,
    0.00233520497626869185,
)  # fmt: skip
_CODY_SQRPI = 0.56418958354775628695  # 1/√π
_CODY_THRESH = 0.46875
_CODY_XSMALL = 1.11e-16
_CODY_XBIG = 26.543
_CODY_XHUGE = 6.71e7
_CODY_XMAX = 2.53e307
_CODY_XNEG = -26.628
_CODY_XINF = 1.79e308

# ``contract`` lets LLVM fuse ``a·b + c`` into one fused multiply-add (a single rounding instead of
# two: never less accurate, about 10 % faster here). No other fast-math flag is used: the
# algorithm relies on IEEE semantics for NaN, infinities and reciprocals.
FASTMATH = {"contract"}
_jit = nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)


@_jit
def _exp_minus_square(y: float) -> float:
    """Return ``exp(-y²)`` as Cody does, splitting ``y`` to keep the exponent exact."""
    head = math.trunc(y * 16.0) / 16.0
    tail = (y - head) * (y + head)
    return math.exp(-head * head) * math.exp(-tail)


@_jit
def _erfc_positive_tail(y: float) -> float:
    """Return ``erfcx(y)`` for ``y > 0.46875`` (Cody's second and third ranges)."""
    if y <= 4.0:
        num = _CODY_C[8] * y
        den = y
        for i in range(7):
            num = (num + _CODY_C[i]) * y
            den = (den + _CODY_D[i]) * y
        return (num + _CODY_C[7]) / (den + _CODY_D[7])
    if y >= _CODY_XHUGE:
        return _CODY_SQRPI / y
    ysq = 1.0 / (y * y)
    num = _CODY_P[5] * ysq
    den = ysq
    for i in range(4):
        num = (num + _CODY_P[i]) * ysq
        den = (den + _CODY_Q[i]) * ysq
    result = ysq * (num + _CODY_P[4]) / (den + _CODY_Q[4])
    return (_CODY_SQRPI - result) / y


@_jit
def _erf_small(x: float) -> float:
    """Return ``erf(x)`` for ``|x| ≤ 0.46875`` (Cody's first range)."""
    y = abs(x)
    ysq = y * y if y > _CODY_XSMALL else 0.0
    num = _CODY_A[4] * ysq
    den = ysq
    for i in range(3):
        num = (num + _CODY_A[i]) * ysq
        den = (den + _CODY_B[i]) * ysq
    return x * (num + _CODY_A[3]) / (den + _CODY_B[3])


@_jit
def erfcx(x: float) -> float:
    """Return the scaled complementary error function ``exp(x²)·erfc(x)`` (Cody 1969)."""
    y = abs(x)
    if y <= _CODY_THRESH:
        return (1.0 - _erf_small(x)) * math.exp(y * y)
    result = 0.0 if y >= _CODY_XMAX else _erfc_positive_tail(y)
    if x < 0.0:
        if x < _CODY_XNEG:
            return _CODY_XINF
        twice = 2.0 / _exp_minus_square(x)
        return twice - result
    return result


@_jit
def erfc(x: float) -> float:
    """Return the complementary error function ``1 - erf(x)`` (Cody 1969)."""
    y = abs(x)
    if y <= _CODY_THRESH:
        return 1.0 - _erf_small(x)
    result = 0.0 if y >= _CODY_XBIG else _erfc_positive_tail(y) * _exp_minus_square(y)
    return 2.0 - result if x < 0.0 else result


@_jit
def norm_pdf(x: float) -> float:
    """Return the standard normal density ``φ(x)``."""
    return _ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * x * x)


@_jit
def norm_cdf(z: float) -> float:
    """Return ``Φ(z)``: Cody's erfc, or Abramowitz & Stegun 26.2.12 for ``z ≤ -10``."""
    if z > _NORM_CDF_ASYMPTOTIC_FIRST:
        return 0.5 * erfc(-z * _ONE_OVER_SQRT_TWO)
    total = 1.0
    if z >= _NORM_CDF_ASYMPTOTIC_SECOND:
        zsqr = z * z
        i = 1.0
        g = 1.0
        a = _DBL_MAX
        while True:
            last = a
            u = (4.0 * i - 3.0) / zsqr
            v = u * ((4.0 * i - 1.0) / zsqr)
            a = g * (u - v)
            total -= a
            g *= v
            i += 1.0
            a = abs(a)
            if not (last > a and a >= abs(total * _DBL_EPSILON)):
                break
    return -norm_pdf(z) * total / z


# Wichura (1988), algorithm AS 241: numerator and denominator coefficients, highest power first.
_AS241_CENTRAL = (
    (
        2509.0809287301227, 33430.57558358813, 67265.7709270087, 45921.95393154987,
        13731.69376550946, 1971.5909503065513, 133.14166789178438, 3.3871328727963665,
    ),
    (
        5226.495278852854, 28729.085735721943, 39307.89580009271, 21213.794301586597,
        5394.196021424751, 687.1870074920579, 42.31333070160091, 1.0,
    ),
)
_AS241_INTERMEDIATE = (
    (
        0.0007745450142783414, 0.022723844989269184, 0.2417807251774506, 1.2704582524523684,
        3.6478483247632045, 5.769497221460691, 4.630337846156546, 1.4234371107496835,
    ),
    (
        1.0507500716444169e-09, 0.0005475938084995345, 0.015198666563616457, 0.14810397642748008,
        0.6897673349851, 1.6763848301838038, 2.053191626637759, 1.0,
    ),
)
_AS241_TAIL = (
    (
        2.0103343992922881e-07, 2.7115555687434876e-05, 0.0012426609473880784, 0.026532189526576124,
        0.29656057182850487, 1.7848265399172913, 5.463784911164114, 6.657904643501103,
    ),
    (
        2.0442631033899397e-15, 1.421511758316446e-07, 1.8463183175100548e-05, 0.0007868691311456133,
        0.014875361290850615, 0.1369298809227358, 0.599832206555888, 1.0,
    ),
)


@_jit
def _rational(r: float, coefficients: tuple[tuple[float, ...], tuple[float, ...]]) -> float:
    """Return ``P(r)/Q(r)`` by Horner's rule (coefficients highest power first)."""
    numerator_coefficients, denominator_coefficients = coefficients
    numerator = numerator_coefficients[0]
    denominator = denominator_coefficients[0]
    for i in range(1, len(numerator_coefficients)):
        numerator = numerator * r + numerator_coefficients[i]
        denominator = denominator * r + denominator_coefficients[i]
    return numerator / denominator


@_jit
def inverse_norm_cdf(u: float) -> float:
    """Return ``Φ⁻¹(u)`` (Wichura 1988, algorithm AS 241, about 16 digits)."""
    if u <= 0.0:
        return math.log(u) if u == 0.0 else math.nan
    if u >= 1.0:
        return math.log(1.0 - u) if u == 1.0 else math.nan
    q = u - 0.5
    if abs(q) <= 0.425:
        return q * _rational(0.180625 - q * q, _AS241_CENTRAL)
    r = math.sqrt(-math.log(u if q < 0.0 else 1.0 - u))
    value = _rational(r - 1.6, _AS241_INTERMEDIATE) if r < 5.0 else _rational(r - 5.0, _AS241_TAIL)
    return -value if q < 0.0 else value


# --- the normalised Black function ------------------------------------------------------------


@_jit
def otm_intrinsic_gap(abs_x: float, b_max: float) -> float:
    """Return ``2·sinh(|x|/2) = 1/b_max - b_max``, the normalised intrinsic value of the
    in-the-money option at ``|x|`` (``b_max = e^(-|x|/2)`` is passed in).

    For small ``|x|`` the Taylor series keeps full relative precision.
    """
    x2 = abs_x * abs_x
    if x2 < 98.0 * _FOURTH_ROOT_DBL_EPSILON:  # 98 ≈ (92897280)^(1/4), from the last coefficient
        series = 1.0 / 1920.0 + x2 * (1.0 / 322560.0 + x2 / 92897280.0)
        return abs_x * (1.0 + x2 * (1.0 / 24.0 + x2 * series))
    return 1.0 / b_max - b_max


@_jit
def _asymptotic_bracket(h: float, t: float) -> float:
    """Return ``b·√(2π)·e^((h²+t²)/2)`` for ``h ≪ 0``, from the asymptotic expansion of ``Φ(z)/φ(z)``.

    ``b = e^(-(h²+t²)/2)/√(2π) · (t/r) · A(h, t)`` with ``r = (h+t)(h-t)`` and ``A`` a series
    in ``q = (h/r)²`` whose coefficients are polynomials in ``e = (t/h)²`` (17th order: relative
    accuracy 1.64e-16 for ``h ≤ -10``; Abramowitz & Stegun 26.2.12). Returns ``(t/r)·A``.
    """
    e = (t / h) * (t / h)
    r = (h + t) * (h - t)
    q = (h / r) * (h / r)
    acc = 0.0
    for k in range(_ASYMPTOTIC_ORDER, 0, -1):
        row = _ASYMPTOTIC_TABLE[k - 1]
        poly = row[_ASYMPTOTIC_ORDER - k]
        for j in range(_ASYMPTOTIC_ORDER - k + 1, _ASYMPTOTIC_ORDER + 1):
            poly = poly * e + row[j]
        acc = poly + (2 * k + 1) * q * acc if k < _ASYMPTOTIC_ORDER else poly
    return (t / r) * (2.0 + q * acc)


@_jit
def _small_t_bracket(h: float, t: float) -> float:
    """Return ``b·√(2π)·e^((h²+t²)/2)`` for small ``t``, from the Taylor series of ``Y(h+t) - Y(h-t)``.

    ``Y(z) = Φ(z)/φ(z)``; twelfth order in ``t``, accurate to about machine precision for
    ``h ≤ 0`` and ``t < τ = 2·ε^(1/16) ≈ 0.21``. ``a = 1 + h·Y(h)`` with
    ``Y(h) = √(π/2)·erfcx(-h/√2)``.
    """
    a = 1.0 + h * (0.5 * _SQRT_TWO_PI) * erfcx(-_ONE_OVER_SQRT_TWO * h)
    w = t * t
    h2 = h * h
    return 2.0 * t * (
        a + w * ((-1.0 + 3.0 * a + a * h2) / 6.0
        + w * ((-7.0 + 15.0 * a + h2 * (-1.0 + 10.0 * a + a * h2)) / 120.0
        + w * ((-57.0 + 105.0 * a + h2 * (-18.0 + 105.0 * a + h2 * (-1.0 + 21.0 * a + a * h2))) / 5040.0
        + w * ((-561.0 + 945.0 * a + h2 * (-285.0 + 1260.0 * a + h2 * (-33.0 + 378.0 * a
               + h2 * (-1.0 + 36.0 * a + a * h2)))) / 362880.0
        + w * ((-6555.0 + 10395.0 * a + h2 * (-4680.0 + 17325.0 * a + h2 * (-840.0 + 6930.0 * a
               + h2 * (-52.0 + 990.0 * a + h2 * (-1.0 + 55.0 * a + a * h2))))) / 39916800.0
        + ((-89055.0 + 135135.0 * a + h2 * (-82845.0 + 270270.0 * a + h2 * (-20370.0 + 135135.0 * a
            + h2 * (-1926.0 + 25740.0 * a + h2 * (-75.0 + 2145.0 * a + h2 * (-1.0 + 78.0 * a + a * h2))))))
           * w) / 6227020800.0)))))
    )  # fmt: skip


@_jit
def normalised_black_and_vega_otm(x: float, s: float, b_max: float) -> tuple[float, float]:
    """Return ``b(x, s)`` and ``∂b/∂s`` for ``x ≤ 0``; ``b_max = e^(x/2)`` is passed in.

    With ``h = x/s``, ``t = s/2``: ``∂b/∂s = e^(-(h²+t²)/2)/√(2π)``, an exponential that three
    of the four regions also need, so it is computed once.
    """
    if s <= 0.0:
        return 0.0, (_ONE_OVER_SQRT_TWO_PI if x == 0.0 else 0.0)
    h = x / s
    t = 0.5 * s
    damping = math.exp(-0.5 * (h * h + t * t))
    vega = _ONE_OVER_SQRT_TWO_PI * damping
    if x < s * _ASYMPTOTIC_THRESHOLD and 0.5 * s * s + x < s * (_SMALL_T_THRESHOLD + _ASYMPTOTIC_THRESHOLD):
        # Region 1: h < η and t < τ + |h| - |η|, tested without dividing by s.
        b = vega * _asymptotic_bracket(h, t)
    elif t < _SMALL_T_THRESHOLD:
        # Region 2: t < τ.
        b = vega * _small_t_bracket(h, t)
    elif x + 0.5 * s * s > s * 0.85:
        # Region 3: h + t > 0.85, the first term dominates (b > ~85 % of b_max): plain formula.
        b = norm_cdf(h + t) * b_max - norm_cdf(h - t) / b_max
    else:
        # Region 4: b = ½·e^(-(h²+t²)/2)·[erfcx(-(h+t)/√2) - erfcx(-(h-t)/√2)], one exponential.
        b = 0.5 * damping * (erfcx(-_ONE_OVER_SQRT_TWO * (h + t)) - erfcx(-_ONE_OVER_SQRT_TWO * (h - t)))
    return max(b, 0.0), vega


# --- rational cubic interpolation (Delbourgo & Gregory 1985) ---------------------------------


@_jit
def _rational_cubic(
    x: float, x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, r: float
) -> float:
    """Return the rational cubic interpolant with end values/slopes at ``x`` (control ``r > -1``)."""
    h = x_r - x_l
    if abs(h) <= 0.0:
        return 0.5 * (y_l + y_r)
    t = (x - x_l) / h
    if not (r >= _RATIONAL_CUBIC_MAX_R):
        omt = 1.0 - t
        t2 = t * t
        omt2 = omt * omt
        numerator = (
            y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2 + y_l * omt2 * omt
        )
        return numerator / (1.0 + (r - 3.0) * t * omt)
    return y_r * t + y_l * (1.0 - t)  # linear, without overflow


@_jit
def _minimum_rational_cubic_r(d_l: float, d_r: float, slope: float, prefer_shape: bool) -> float:
    """Return the smallest control parameter keeping the interpolant monotone/convex as the data."""
    monotonic = d_l * slope >= 0.0 and d_r * slope >= 0.0
    convex = d_l <= slope <= d_r
    concave = d_l >= slope >= d_r
    if not monotonic and not convex and not concave:
        return _RATIONAL_CUBIC_MIN_R
    d_r_m_d_l = d_r - d_l
    d_r_m_s = d_r - slope
    s_m_d_l = slope - d_l
    r1 = -_DBL_MAX
    r2 = r1
    if monotonic:
        if abs(slope) >= _DBL_MIN:
            r1 = (d_r + d_l) / slope
        elif prefer_shape:
            r1 = _RATIONAL_CUBIC_MAX_R
    if convex or concave:
        if abs(s_m_d_l) >= _DBL_MIN and abs(d_r_m_s) >= _DBL_MIN:
            r2 = max(abs(d_r_m_d_l / d_r_m_s), abs(d_r_m_d_l / s_m_d_l))
        elif prefer_shape:
            r2 = _RATIONAL_CUBIC_MAX_R
    elif monotonic and prefer_shape:
        r2 = _RATIONAL_CUBIC_MAX_R
    return max(_RATIONAL_CUBIC_MIN_R, max(r1, r2))


@_jit
def _convex_r_left(
    x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, second_l: float,
    prefer_shape: bool,
) -> float:  # fmt: skip
    """Return the control parameter matching the second derivative ``second_l`` at the left end."""
    h = x_r - x_l
    numerator = 0.5 * h * second_l + (d_r - d_l)
    if abs(numerator) < _DBL_MIN:
        r = 0.0
    else:
        denominator = (y_r - y_l) / h - d_l
        if abs(denominator) < _DBL_MIN:
            r = _RATIONAL_CUBIC_MAX_R if numerator > 0.0 else _RATIONAL_CUBIC_MIN_R
        else:
            r = numerator / denominator
    return max(r, _minimum_rational_cubic_r(d_l, d_r, (y_r - y_l) / h, prefer_shape))


@_jit
def _convex_r_right(
    x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, second_r: float,
    prefer_shape: bool,
) -> float:  # fmt: skip
    """Return the control parameter matching the second derivative ``second_r`` at the right end."""
    h = x_r - x_l
    numerator = 0.5 * h * second_r + (d_r - d_l)
    if abs(numerator) < _DBL_MIN:
        r = 0.0
    else:
        denominator = d_r - (y_r - y_l) / h
        if abs(denominator) < _DBL_MIN:
            r = _RATIONAL_CUBIC_MAX_R if numerator > 0.0 else _RATIONAL_CUBIC_MIN_R
        else:
            r = numerator / denominator
    return max(r, _minimum_rational_cubic_r(d_l, d_r, (y_r - y_l) / h, prefer_shape))


# --- the lower and upper maps of the initial guess --------------------------------------------


@_jit
def _lower_map(x: float, s: float) -> tuple[float, float, float]:
    """Return ``f(s)`` of the lower map ``f = (2π/√27)·|x|·Φ(-|x|/(√3·s))³`` and ``df/db``, ``d²f/db²``."""
    ax = abs(x)
    z = _SQRT_ONE_OVER_THREE * ax / s
    y = z * z
    s2 = s * s
    # Φ(-z) = e^(-z²/2)·erfcx(z/√2)/2 and Φ(-z)/φ(z) = √(π/2)·erfcx(z/√2): two exponentials, not five.
    scaled = erfcx(_ONE_OVER_SQRT_TWO * z)
    big_phi = 0.5 * math.exp(-0.5 * y) * scaled
    growth = math.exp(y + 0.125 * s2)
    fpp = (
        _PI_OVER_SIX * y / (s2 * s) * big_phi
        * (8.0 * _SQRT_THREE * s * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * _SQRT_PI_OVER_TWO * scaled)
        * (growth * growth)
    )  # fmt: skip
    big_phi2 = big_phi * big_phi
    fp = _TWO_PI * y * big_phi2 * growth
    f = _TWO_PI_OVER_SQRT_TWENTY_SEVEN * ax * (big_phi2 * big_phi)
    return f, fp, fpp


@_jit
def _inverse_lower_map(x: float, f: float) -> float:
    """Return ``s`` with lower map value ``f``."""
    ax = abs(x)
    cube_root = (f / (_TWO_PI_OVER_SQRT_TWENTY_SEVEN * ax)) ** (1.0 / 3.0)
    return abs(x / (_SQRT_THREE * inverse_norm_cdf(cube_root)))


@_jit
def _upper_map(x: float, s: float) -> tuple[float, float, float]:
    """Return ``f(s) = Φ(-s/2)`` of the upper map and ``df/db``, ``d²f/db²``."""
    f = norm_cdf(-0.5 * s)
    w = (x / s) * (x / s)
    fp = -0.5 * math.exp(0.5 * w)
    fpp = _SQRT_PI_OVER_TWO * math.exp(w + 0.125 * s * s) * w / s
    return f, fp, fpp


@_jit
def _householder_factor(newton: float, halley: float, hh3: float) -> float:
    """Return the Householder(3) correction ``(1 + h·n/2) / (1 + n·(h + h3·n/6))`` of a Newton step."""
    return (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))


# --- the inversion ------------------------------------------------------------------------------


@_jit
def normalised_implied_volatility(beta: float, x: float, b_max: float) -> float:
    """Return ``s = σ√T`` with ``b(x, s) = beta`` for an out-of-the-money call.

    Requires ``x ≤ 0``, ``b_max = e^(x/2)`` and ``0 < beta < b_max`` (the caller checks;
    outside, the result is meaningless). Jäckel's four-branch rational guess, then up to
    :data:`MAX_HOUSEHOLDER_STEPS` Householder(3) steps on the branch's objective:
    ``1/ln b(s) - 1/ln β`` in the lowest segment, ``ln((b_max-β)/(b_max-b(s)))`` in the
    highest (when ``β > b_max/2``), ``b(s) - β`` in between. A step leaving the bracket known
    so far is replaced by bisection.
    """
    s_c = math.sqrt(abs(2.0 * x))
    b_c, v_c = normalised_black_and_vega_otm(x, s_c, b_max)
    s_left = _DBL_MIN
    s_right = _DBL_MAX
    objective = 0  # 0: b(s) - β;  1: lower (logarithmic);  2: upper
    if beta < b_c:
        s_l = s_c - b_c / v_c
        b_l, v_l = normalised_black_and_vega_otm(x, s_l, b_max)
        if beta < b_l:
            f_l, fp_l, fpp_l = _lower_map(x, s_l)
            r_ll = _convex_r_right(0.0, b_l, 0.0, f_l, 1.0, fp_l, fpp_l, True)
            f = _rational_cubic(beta, 0.0, b_l, 0.0, f_l, 1.0, fp_l, r_ll)
            if not (f > 0.0):  # round-off for extreme |x|: quadratic through f(0)=0, f'(0)=1, f(b_l)
                u = beta / b_l
                f = (f_l * u + b_l * (1.0 - u)) * u
            s = _inverse_lower_map(x, f)
            s_right = s_l
            objective = 1
        else:
            r_lm = _convex_r_right(b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, 0.0, False)
            s = _rational_cubic(beta, b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, r_lm)
            s_left = s_l
            s_right = s_c
    else:
        s_h = s_c + (b_max - b_c) / v_c if v_c > _DBL_MIN else s_c
        b_h, v_h = normalised_black_and_vega_otm(x, s_h, b_max)
        if beta <= b_h:
            r_hm = _convex_r_left(b_c, b_h, s_c, s_h, 1.0 / v_c, 1.0 / v_h, 0.0, False)
            s = _rational_cubic(beta, b_c, b_h, s_c, s_h, 1.0 / v_c, 1.0 / v_h, r_hm)
            s_left = s_c
            s_right = s_h
        else:
            f_h, fp_h, fpp_h = _upper_map(x, s_h)
            f = -_DBL_MAX
            if -_SQRT_DBL_MAX < fpp_h < _SQRT_DBL_MAX:
                r_hh = _convex_r_left(b_h, b_max, f_h, 0.0, fp_h, -0.5, fpp_h, True)
                f = _rational_cubic(beta, b_h, b_max, f_h, 0.0, fp_h, -0.5, r_hh)
            if f <= 0.0:  # quadratic through f(b_h), f(b_max)=0, f'(b_max)=-1/2
                span = b_max - b_h
                u = (beta - b_h) / span
                f = (f_h * (1.0 - u) + 0.5 * span * u) * (1.0 - u)
            s = -2.0 * inverse_norm_cdf(f)
            s_left = s_h
            if beta > 0.5 * b_max:
                objective = 2

    ln_beta = math.log(beta) if objective == 1 else 1.0
    inv_ln_beta = 1.0 / ln_beta
    ds = -_DBL_MAX
    ds_previous = 0.0
    reversals = 0
    iterations = 0
    while iterations < MAX_HOUSEHOLDER_STEPS and abs(ds) > _DBL_EPSILON * s:
        if ds * ds_previous < 0.0:
            reversals += 1
        if iterations > 0 and (reversals == 3 or not (s_left < s < s_right)):
            # Looping or leaving the bracket (only for extreme |x|): bisect instead.
            s = 0.5 * (s_left + s_right)
            if s_right - s_left <= _DBL_EPSILON * s:
                break
            reversals = 0
            ds = 0.0
        ds_previous = ds
        b, bp = normalised_black_and_vega_otm(x, s, b_max)
        if b > beta and s < s_right:
            s_right = s
        elif b < beta and s > s_left:
            s_left = s
        h = x / s
        h_over_s = h / s  # not x/s², which underflows to 0/0 for tiny s
        b_halley = h * h_over_s - 0.25 * s  # b''/b' = x²/s³ - s/4
        b_hh3 = b_halley * b_halley - 3.0 * h_over_s * h_over_s - 0.25  # b'''/b'
        if objective == 1:
            if b <= 0.0 or bp <= 0.0:  # underflow
                ds = 0.5 * (s_left + s_right) - s
            else:
                ln_b = math.log(b)
                inv_ln_b = 1.0 / ln_b
                bpob = bp / b
                newton = (ln_beta - ln_b) * ln_b * inv_ln_beta * (b / bp)
                halley_tail = 1.0 + 2.0 * inv_ln_b
                halley = b_halley - bpob * halley_tail
                hh3 = (
                    b_hh3
                    + 2.0 * bpob * bpob * (1.0 + 3.0 * inv_ln_b * (1.0 + inv_ln_b))
                    - 3.0 * b_halley * bpob * halley_tail
                )
                ds = newton * _householder_factor(newton, halley, hh3)
        elif objective == 2:
            if b >= b_max or bp <= _DBL_MIN:  # underflow
                ds = 0.5 * (s_left + s_right) - s
            else:
                gap = b_max - b
                g = math.log((b_max - beta) / gap)
                gp = bp / gap
                newton = -g / gp
                halley = b_halley + gp
                hh3 = b_hh3 + gp * (2.0 * gp + 3.0 * b_halley)
                ds = newton * _householder_factor(newton, halley, hh3)
        else:
            newton = (beta - b) / bp
            ds = newton * _householder_factor(newton, b_halley, b_hh3)
        ds = max(-0.5 * s, ds)
        s += ds
        iterations += 1
    return s
