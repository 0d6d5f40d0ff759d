"""The catalog: every named strategy as a declarative :class:`StrategySpec`.

Strike slots ascend (``K1 < K2 < K3 < K4``); a leg's ratio is signed contracts per strategy
unit; stock legs are in shares (100 = one lot of a standard equity option). Default strikes are
listed-strike steps from the ATM strike (:class:`AtmSteps`) except where a strategy is defined
by delta (the poor man's covered call).

Naming. Where QuantConnect LEAN defines the strategy, ``lean_name`` is LEAN's name. LEAN names
the *credit* iron butterfly and iron condor plainly ("Iron Butterfly", "Iron Condor") and the
debit ones "Short …"; this catalog follows the seller's convention of the rest of the list —
``short_iron_condor`` sells the body for a credit — so ``short_iron_condor.lean_name`` is
"Iron Condor" and ``long_iron_condor.lean_name`` is "Short Iron Condor" (likewise the iron
butterflies). LEAN's "Call Calendar Spread" (short near, long far) is ``long_call_calendar``.

Aliases by structure: the 1×2 ``call_ratio_spread`` has the legs of LEAN's
``short_call_backspread`` and ``put_ratio_spread`` those of ``short_put_backspread``;
``cash_secured_put`` has the legs of ``naked_put`` (it differs in the collateral: the strike in
cash); ``poor_mans_covered_call`` is a ``call_diagonal`` whose long leg is chosen deep in the
money by delta. They are listed under each name because traders look for each.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal

from amcp.domain.enums import OptionRight
from amcp.options.strategies._model import (
    AtDelta,
    AtmSteps,
    ExpirySlot,
    OptionLegSpec,
    Outlook,
    StrategyError,
    StrategySpec,
    StrikeSelector,
    WidthRule,
)

__all__ = ["CATALOG", "get_spec", "names"]

_C = OptionRight.CALL
_P = OptionRight.PUT


def _leg(right: OptionRight, ratio: int, slot: str, expiry: ExpirySlot = "near") -> OptionLegSpec:
    return OptionLegSpec(right=right, ratio=ratio, strike=slot, expiry=expiry)


def _steps(*steps: int) -> dict[str, StrikeSelector]:
    return {f"K{i + 1}": AtmSteps(step) for i, step in enumerate(steps)}


def _equal(
    a: str,
    b: str,
    c: str,
    d: str,
    ratio: float = 1.0,
    relation: Literal["equal", "less", "greater"] = "equal",
) -> WidthRule:
    return WidthRule(first=(a, b), second=(c, d), relation=relation, ratio=ratio)


_BUTTERFLY = (_equal("K1", "K2", "K2", "K3"),)
_CONDOR = (_equal("K1", "K2", "K3", "K4"),)


def _spec(
    name: str,
    title: str,
    lean_name: str | None,
    outlook: Outlook,
    legs: tuple[OptionLegSpec, ...],
    strikes: dict[str, StrikeSelector],
    description: str,
    *,
    shares: int = 0,
    rules: tuple[WidthRule, ...] = (),
) -> StrategySpec:
    return StrategySpec(
        name=name,
        title=title,
        lean_name=lean_name,
        outlook=outlook,
        legs=legs,
        stock_shares=shares,
        default_strikes=strikes,
        width_rules=rules,
        description=description,
    )


def _inverse(
    spec: StrategySpec, name: str, title: str, lean_name: str | None, outlook: Outlook, description: str
) -> StrategySpec:
    """The spec with every leg and the stock reversed (the other side of the trade)."""
    legs = tuple(OptionLegSpec(leg.right, -leg.ratio, leg.strike, leg.expiry) for leg in spec.legs)
    return StrategySpec(
        name=name,
        title=title,
        lean_name=lean_name,
        outlook=outlook,
        legs=legs,
        stock_shares=-spec.stock_shares,
        default_strikes=dict(spec.default_strikes),
        width_rules=spec.width_rules,
        description=description,
    )


def _build() -> dict[str, StrategySpec]:
    specs: list[StrategySpec] = []
    add = specs.append

    # ----- single options and stock combinations
    add(_spec("long_call", "Long Call", None, "bullish", (_leg(_C, 1, "K1"),), _steps(0), "Buy one call."))
    add(_spec("long_put", "Long Put", None, "bearish", (_leg(_P, 1, "K1"),), _steps(0), "Buy one put."))
    add(
        _spec(
            "naked_call",
            "Naked Call",
            "Naked Call",
            "bearish",
            (_leg(_C, -1, "K1"),),
            _steps(1),
            "Sell one call without the stock.",
        )
    )
    add(
        _spec(
            "naked_put",
            "Naked Put",
            "Naked Put",
            "bullish",
            (_leg(_P, -1, "K1"),),
            _steps(-1),
            "Sell one put without a short stock position.",
        )
    )
    add(
        _spec(
            "cash_secured_put",
            "Cash-Secured Put",
            None,
            "bullish",
            (_leg(_P, -1, "K1"),),
            _steps(-1),
            "Sell one put holding its strike in cash (legs of a naked put).",
        )
    )
    add(
        _spec(
            "covered_call",
            "Covered Call",
            "Covered Call",
            "bullish",
            (_leg(_C, -1, "K1"),),
            _steps(1),
            "Hold 100 shares and sell one call.",
            shares=100,
        )
    )
    add(
        _spec(
            "covered_put",
            "Covered Put",
            "Covered Put",
            "bearish",
            (_leg(_P, -1, "K1"),),
            _steps(-1),
            "Short 100 shares and sell one put.",
            shares=-100,
        )
    )
    add(
        _spec(
            "protective_call",
            "Protective Call",
            "Protective Call",
            "bearish",
            (_leg(_C, 1, "K1"),),
            _steps(1),
            "Short 100 shares and buy one call.",
            shares=-100,
        )
    )
    add(
        _spec(
            "protective_put",
            "Protective Put",
            "Protective Put",
            "bullish",
            (_leg(_P, 1, "K1"),),
            _steps(-1),
            "Hold 100 shares and buy one put.",
            shares=100,
        )
    )
    add(
        _spec(
            "collar",
            "Collar",
            "Protective Collar",
            "neutral",
            (_leg(_P, 1, "K1"), _leg(_C, -1, "K2")),
            _steps(-1, 1),
            "Hold 100 shares, buy a lower put, sell a higher call.",
            shares=100,
        )
    )
    conversion = _spec(
        "conversion",
        "Conversion",
        "Conversion",
        "neutral",
        (_leg(_P, 1, "K1"), _leg(_C, -1, "K1")),
        _steps(0),
        "Hold 100 shares, buy a put and sell a call at one strike.",
        shares=100,
    )
    add(conversion)
    add(
        _inverse(
            conversion,
            "reverse_conversion",
            "Reverse Conversion",
            "Reverse Conversion",
            "neutral",
            "Short 100 shares, sell a put and buy a call at one strike.",
        )
    )
    synthetic = _spec(
        "synthetic_long_stock",
        "Synthetic Long Stock",
        None,
        "bullish",
        (_leg(_P, -1, "K1"), _leg(_C, 1, "K1")),
        _steps(0),
        "Buy a call and sell a put at one strike.",
    )
    add(synthetic)
    add(
        _inverse(
            synthetic,
            "synthetic_short_stock",
            "Synthetic Short Stock",
            None,
            "bearish",
            "Sell a call and buy a put at one strike.",
        )
    )
    add(
        _spec(
            "risk_reversal",
            "Risk Reversal",
            None,
            "bullish",
            (_leg(_P, -1, "K1"), _leg(_C, 1, "K2")),
            _steps(-1, 1),
            "Sell a lower put and buy a higher call.",
        )
    )

    # ----- verticals
    add(
        _spec(
            "bull_call_spread",
            "Bull Call Spread",
            "Bull Call Spread",
            "bullish",
            (_leg(_C, 1, "K1"), _leg(_C, -1, "K2")),
            _steps(0, 1),
            "Buy a call, sell a higher call.",
        )
    )
    add(
        _spec(
            "bear_call_spread",
            "Bear Call Spread",
            "Bear Call Spread",
            "bearish",
            (_leg(_C, -1, "K1"), _leg(_C, 1, "K2")),
            _steps(1, 2),
            "Sell a call, buy a higher call.",
        )
    )
    add(
        _spec(
            "bull_put_spread",
            "Bull Put Spread",
            "Bull Put Spread",
            "bullish",
            (_leg(_P, 1, "K1"), _leg(_P, -1, "K2")),
            _steps(-2, -1),
            "Sell a put, buy a lower put.",
        )
    )
    add(
        _spec(
            "bear_put_spread",
            "Bear Put Spread",
            "Bear Put Spread",
            "bearish",
            (_leg(_P, -1, "K1"), _leg(_P, 1, "K2")),
            _steps(-1, 0),
            "Buy a put, sell a lower put.",
        )
    )

    # ----- straddles, strangles, guts, straps and strips
    straddle = _spec(
        "long_straddle",
        "Long Straddle",
        "Straddle",
        "volatile",
        (_leg(_P, 1, "K1"), _leg(_C, 1, "K1")),
        _steps(0),
        "Buy a call and a put at one strike.",
    )
    add(straddle)
    add(
        _inverse(
            straddle,
            "short_straddle",
            "Short Straddle",
            "Short Straddle",
            "neutral",
            "Sell a call and a put at one strike.",
        )
    )
    strangle = _spec(
        "long_strangle",
        "Long Strangle",
        "Strangle",
        "volatile",
        (_leg(_P, 1, "K1"), _leg(_C, 1, "K2")),
        _steps(-1, 1),
        "Buy a lower put and a higher call.",
    )
    add(strangle)
    add(
        _inverse(
            strangle,
            "short_strangle",
            "Short Strangle",
            "Short Strangle",
            "neutral",
            "Sell a lower put and a higher call.",
        )
    )
    guts = _spec(
        "long_guts",
        "Long Guts",
        None,
        "volatile",
        (_leg(_C, 1, "K1"), _leg(_P, 1, "K2")),
        _steps(-1, 1),
        "Buy an in-the-money call and an in-the-money put.",
    )
    add(guts)
    add(
        _inverse(
            guts,
            "short_guts",
            "Short Guts",
            None,
            "neutral",
            "Sell an in-the-money call and an in-the-money put.",
        )
    )
    add(
        _spec(
            "strap",
            "Strap",
            None,
            "volatile",
            (_leg(_P, 1, "K1"), _leg(_C, 2, "K1")),
            _steps(0),
            "Buy two calls and one put at one strike.",
        )
    )
    add(
        _spec(
            "strip",
            "Strip",
            None,
            "volatile",
            (_leg(_P, 2, "K1"), _leg(_C, 1, "K1")),
            _steps(0),
            "Buy one call and two puts at one strike.",
        )
    )

    # ----- butterflies and condors
    for right, word in ((_C, "Call"), (_P, "Put")):
        key = word.lower()
        fly = _spec(
            f"long_{key}_butterfly",
            f"Long {word} Butterfly",
            f"Butterfly {word}",
            "neutral",
            (_leg(right, 1, "K1"), _leg(right, -2, "K2"), _leg(right, 1, "K3")),
            _steps(-1, 0, 1),
            f"Buy a {key}, sell two {key}s a width higher, buy one two widths higher.",
            rules=_BUTTERFLY,
        )
        add(fly)
        add(
            _inverse(
                fly,
                f"short_{key}_butterfly",
                f"Short {word} Butterfly",
                f"Short Butterfly {word}",
                "volatile",
                f"Sell a {key}, buy two {key}s a width higher, sell one two widths higher.",
            )
        )
        condor = _spec(
            f"long_{key}_condor",
            f"Long {word} Condor",
            None,
            "neutral",
            (_leg(right, 1, "K1"), _leg(right, -1, "K2"), _leg(right, -1, "K3"), _leg(right, 1, "K4")),
            _steps(-2, -1, 1, 2),
            f"Buy {key}s at K1 and K4, sell {key}s at K2 and K3 (equal wings).",
            rules=_CONDOR,
        )
        add(condor)
        add(
            _inverse(
                condor,
                f"short_{key}_condor",
                f"Short {word} Condor",
                None,
                "volatile",
                f"Sell {key}s at K1 and K4, buy {key}s at K2 and K3 (equal wings).",
            )
        )
    add(
        _spec(
            "call_broken_wing_butterfly",
            "Call Broken-Wing Butterfly",
            None,
            "bullish",
            (_leg(_C, 1, "K1"), _leg(_C, -2, "K2"), _leg(_C, 1, "K3")),
            _steps(-1, 1, 4),
            "A long call butterfly whose upper wing is wider than the lower.",
            rules=(_equal("K1", "K2", "K2", "K3", relation="less"),),
        )
    )
    add(
        _spec(
            "put_broken_wing_butterfly",
            "Put Broken-Wing Butterfly",
            None,
            "bearish",
            (_leg(_P, 1, "K1"), _leg(_P, -2, "K2"), _leg(_P, 1, "K3")),
            _steps(-4, -1, 1),
            "A long put butterfly whose lower wing is wider than the upper.",
            rules=(_equal("K1", "K2", "K2", "K3", relation="greater"),),
        )
    )
    iron_fly = _spec(
        "short_iron_butterfly",
        "Short Iron Butterfly",
        "Iron Butterfly",
        "neutral",
        (_leg(_P, 1, "K1"), _leg(_P, -1, "K2"), _leg(_C, -1, "K2"), _leg(_C, 1, "K3")),
        _steps(-1, 0, 1),
        "Sell an ATM straddle, buy a lower put and a higher call (credit).",
    )
    add(iron_fly)
    add(
        _inverse(
            iron_fly,
            "long_iron_butterfly",
            "Long Iron Butterfly",
            "Short Iron Butterfly",
            "volatile",
            "Buy an ATM straddle, sell a lower put and a higher call (debit).",
        )
    )
    iron_condor = _spec(
        "short_iron_condor",
        "Short Iron Condor",
        "Iron Condor",
        "neutral",
        (_leg(_P, 1, "K1"), _leg(_P, -1, "K2"), _leg(_C, -1, "K3"), _leg(_C, 1, "K4")),
        _steps(-2, -1, 1, 2),
        "Sell a put spread and a call spread around the spot (credit).",
    )
    add(iron_condor)
    add(
        _inverse(
            iron_condor,
            "long_iron_condor",
            "Long Iron Condor",
            "Short Iron Condor",
            "volatile",
            "Buy a put spread and a call spread around the spot (debit).",
        )
    )
    add(
        _spec(
            "call_christmas_tree",
            "Call Christmas Tree",
            None,
            "bullish",
            (_leg(_C, 1, "K1"), _leg(_C, -3, "K2"), _leg(_C, 2, "K3")),
            _steps(-1, 1, 2),
            "Buy one call, skip a strike, sell three calls, buy two calls a strike higher.",
            rules=(_equal("K1", "K2", "K2", "K3", ratio=2.0),),
        )
    )
    add(
        _spec(
            "put_christmas_tree",
            "Put Christmas Tree",
            None,
            "bearish",
            (_leg(_P, 2, "K1"), _leg(_P, -3, "K2"), _leg(_P, 1, "K3")),
            _steps(-2, -1, 1),
            "Buy one put, skip a strike, sell three puts, buy two puts a strike lower.",
            rules=(_equal("K2", "K3", "K1", "K2", ratio=2.0),),
        )
    )

    # ----- boxes
    box = _spec(
        "box_spread",
        "Box Spread",
        "Box Spread",
        "neutral",
        (_leg(_P, -1, "K1"), _leg(_P, 1, "K2"), _leg(_C, 1, "K1"), _leg(_C, -1, "K2")),
        _steps(-1, 1),
        "A bull call spread and a bear put spread on the same strikes (pays the width).",
    )
    add(box)
    add(
        _inverse(
            box,
            "short_box_spread",
            "Short Box Spread",
            "Short Box Spread",
            "neutral",
            "A bear call spread and a bull put spread on the same strikes (borrows the width).",
        )
    )

    # ----- ladders, backspreads, ratio spreads
    add(
        _spec(
            "bull_call_ladder",
            "Bull Call Ladder",
            "Bull Call Ladder",
            "neutral",
            (_leg(_C, 1, "K1"), _leg(_C, -1, "K2"), _leg(_C, -1, "K3")),
            _steps(0, 1, 2),
            "Buy a call, sell a higher call and one higher still.",
        )
    )
    add(
        _spec(
            "bear_call_ladder",
            "Bear Call Ladder",
            "Bear Call Ladder",
            "volatile",
            (_leg(_C, -1, "K1"), _leg(_C, 1, "K2"), _leg(_C, 1, "K3")),
            _steps(0, 1, 2),
            "Sell a call, buy a higher call and one higher still.",
        )
    )
    add(
        _spec(
            "bull_put_ladder",
            "Bull Put Ladder",
            "Bull Put Ladder",
            "volatile",
            (_leg(_P, 1, "K1"), _leg(_P, 1, "K2"), _leg(_P, -1, "K3")),
            _steps(-2, -1, 0),
            "Sell a put, buy a lower put and one lower still.",
        )
    )
    add(
        _spec(
            "bear_put_ladder",
            "Bear Put Ladder",
            "Bear Put Ladder",
            "neutral",
            (_leg(_P, -1, "K1"), _leg(_P, -1, "K2"), _leg(_P, 1, "K3")),
            _steps(-2, -1, 0),
            "Buy a put, sell a lower put and one lower still.",
        )
    )
    call_back = _spec(
        "call_backspread",
        "Call Backspread",
        "Call Backspread",
        "bullish",
        (_leg(_C, -1, "K1"), _leg(_C, 2, "K2")),
        _steps(0, 1),
        "Sell one call, buy two higher calls.",
    )
    add(call_back)
    add(
        _inverse(
            call_back,
            "short_call_backspread",
            "Short Call Backspread",
            "Short Call Backspread",
            "neutral",
            "Buy one call, sell two higher calls.",
        )
    )
    put_back = _spec(
        "put_backspread",
        "Put Backspread",
        "Put Backspread",
        "bearish",
        (_leg(_P, 2, "K1"), _leg(_P, -1, "K2")),
        _steps(-1, 0),
        "Sell one put, buy two lower puts.",
    )
    add(put_back)
    add(
        _inverse(
            put_back,
            "short_put_backspread",
            "Short Put Backspread",
            "Short Put Backspread",
            "neutral",
            "Buy one put, sell two lower puts.",
        )
    )
    add(
        _inverse(
            call_back,
            "call_ratio_spread",
            "Call Ratio Spread",
            None,
            "neutral",
            "Buy one call, sell two higher calls (1×2; legs of a short call backspread).",
        )
    )
    add(
        _inverse(
            put_back,
            "put_ratio_spread",
            "Put Ratio Spread",
            None,
            "neutral",
            "Buy one put, sell two lower puts (1×2; legs of a short put backspread).",
        )
    )

    # ----- three-legged combinations
    add(
        _spec(
            "jade_lizard",
            "Jade Lizard",
            None,
            "bullish",
            (_leg(_P, -1, "K1"), _leg(_C, -1, "K2"), _leg(_C, 1, "K3")),
            _steps(-1, 1, 2),
            "Sell a put and a bear call spread above it.",
        )
    )
    add(
        _spec(
            "twisted_sister",
            "Twisted Sister (Reverse Jade Lizard)",
            None,
            "bearish",
            (_leg(_P, 1, "K1"), _leg(_P, -1, "K2"), _leg(_C, -1, "K3")),
            _steps(-2, -1, 1),
            "Sell a call and a bull put spread below it.",
        )
    )
    add(
        _spec(
            "bullish_seagull",
            "Bullish Seagull",
            None,
            "bullish",
            (_leg(_P, -1, "K1"), _leg(_C, 1, "K2"), _leg(_C, -1, "K3")),
            _steps(-1, 0, 1),
            "Buy a call spread financed by selling a lower put.",
        )
    )
    add(
        _spec(
            "bearish_seagull",
            "Bearish Seagull",
            None,
            "bearish",
            (_leg(_P, -1, "K1"), _leg(_P, 1, "K2"), _leg(_C, -1, "K3")),
            _steps(-1, 0, 1),
            "Buy a put spread financed by selling a higher call.",
        )
    )

    # ----- calendars and diagonals (near and far expiries)
    for right, word in ((_C, "Call"), (_P, "Put")):
        key = word.lower()
        calendar = _spec(
            f"long_{key}_calendar",
            f"Long {word} Calendar",
            f"{word} Calendar Spread",
            "neutral",
            (_leg(right, -1, "K1", "near"), _leg(right, 1, "K1", "far")),
            _steps(0),
            f"Sell a near {key}, buy a far {key} at the same strike.",
        )
        add(calendar)
        add(
            _inverse(
                calendar,
                f"short_{key}_calendar",
                f"Short {word} Calendar",
                f"Short {word} Calendar Spread",
                "volatile",
                f"Buy a near {key}, sell a far {key} at the same strike.",
            )
        )
    jelly = _spec(
        "jelly_roll",
        "Jelly Roll",
        "Jelly Roll",
        "neutral",
        (
            _leg(_P, 1, "K1", "near"),
            _leg(_C, -1, "K1", "near"),
            _leg(_P, -1, "K1", "far"),
            _leg(_C, 1, "K1", "far"),
        ),
        _steps(0),
        "A long call calendar and a short put calendar at one strike.",
    )
    add(jelly)
    add(
        _inverse(
            jelly,
            "short_jelly_roll",
            "Short Jelly Roll",
            "Short Jelly Roll",
            "neutral",
            "A short call calendar and a long put calendar at one strike.",
        )
    )
    add(
        _spec(
            "call_diagonal",
            "Call Diagonal",
            None,
            "bullish",
            (_leg(_C, 1, "K1", "far"), _leg(_C, -1, "K2", "near")),
            _steps(0, 1),
            "Buy a far call, sell a near call at a higher strike.",
        )
    )
    add(
        _spec(
            "put_diagonal",
            "Put Diagonal",
            None,
            "bearish",
            (_leg(_P, -1, "K1", "near"), _leg(_P, 1, "K2", "far")),
            _steps(-1, 0),
            "Buy a far put, sell a near put at a lower strike.",
        )
    )
    add(
        _spec(
            "poor_mans_covered_call",
            "Poor Man's Covered Call",
            None,
            "bullish",
            (_leg(_C, 1, "K1", "far"), _leg(_C, -1, "K2", "near")),
            {"K1": AtDelta(0.80), "K2": AtDelta(0.30)},
            "Buy a deep in-the-money far call (about 0.80 delta), sell a near call (about 0.30 delta).",
        )
    )
    add(
        _spec(
            "double_calendar",
            "Double Calendar",
            None,
            "neutral",
            (
                _leg(_P, -1, "K1", "near"),
                _leg(_P, 1, "K1", "far"),
                _leg(_C, -1, "K2", "near"),
                _leg(_C, 1, "K2", "far"),
            ),
            _steps(-1, 1),
            "A put calendar at a lower strike and a call calendar at a higher strike.",
        )
    )
    add(
        _spec(
            "double_diagonal",
            "Double Diagonal",
            None,
            "neutral",
            (
                _leg(_P, 1, "K1", "far"),
                _leg(_P, -1, "K2", "near"),
                _leg(_C, -1, "K3", "near"),
                _leg(_C, 1, "K4", "far"),
            ),
            _steps(-2, -1, 1, 2),
            "A put diagonal below and a call diagonal above: short near K2 put and K3 call, "
            "long far K1 put and K4 call.",
        )
    )
    return {spec.name: spec for spec in specs}


CATALOG: MappingProxyType[str, StrategySpec] = MappingProxyType(_build())
"""Every named strategy, by catalog name."""


def names() -> tuple[str, ...]:
    """The catalog names, sorted."""
    return tuple(sorted(CATALOG))


def get_spec(name: str) -> StrategySpec:
    """Return the spec named ``name``.

    Raises:
        StrategyError: if the catalog has no such strategy (the message lists close names).
    """
    try:
        return CATALOG[name]
    except KeyError:
        close = [known for known in CATALOG if name.replace("-", "_").lower() in known]
        raise StrategyError(
            f"no strategy named {name!r} in the catalog"
            + (f"; did you mean {close}?" if close else f" ({len(CATALOG)} names)")
        ) from None
