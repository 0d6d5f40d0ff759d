"""Configuration models for every job and component, and the one reader, :func:`load_config`.

Every model is frozen and rejects unknown keys; constraint failures name the key path and the
offending value. Secrets never come from YAML (they come from the environment or the keystore).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from amcp.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


PositiveDecimal = Annotated[Decimal, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]

# --------------------------------------------------------------------------- components


class RunConfig(_Model):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="prefix of the run id")
    output_dir: str = Field("runs", min_length=1, description="folder (or fsspec URL) for run folders")


class StoreConfig(_Model):
    """Where the Parquet market-data store lives: a folder, or an S3 bucket (AWS or MinIO).

    Credentials never come from YAML: ``key_env`` and ``secret_env`` name the environment
    variables that hold them (read when the store is opened).
    """

    url: str = Field("data/store", min_length=1, description="store root: a folder or fsspec URL, e.g. s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 for MinIO")
    region: str | None = Field(None, description="S3 region, if the server needs one")
    key_env: str = Field("AWS_ACCESS_KEY_ID", min_length=1, description="environment variable holding the S3 access key")
    secret_env: str = Field("AWS_SECRET_ACCESS_KEY", min_length=1, description="environment variable holding the S3 secret")
    anon: bool = Field(False, description="anonymous S3 access (public buckets)")

    def storage_options(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """fsspec options for :attr:`url` (empty for a local folder)."""
        if not self.url.startswith(("s3://", "s3a://")):
            return {}
        env = os.environ if environ is None else environ
        options: dict[str, Any] = {"anon": self.anon}
        key, secret = env.get(self.key_env), env.get(self.secret_env)
        if key and secret and not self.anon:
            options["key"], options["secret"] = key, secret
        client_kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.region:
            client_kwargs["region_name"] = self.region
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        return options


class DataConfig(_Model):
    """Daily bars for a backtest or paper run: a Parquet file (``path``) or the store (``store``)."""

    path: str | None = Field(None, min_length=1, description="Parquet file of daily bars (symbol, date, OHLCV)")
    store: StoreConfig | None = Field(None, description="read equities/daily from this market-data store instead")
    adjustment: Literal["raw", "split", "all"] = Field(
        "all", description="store reads: apply splits (split) or splits and dividends (all) from the store's corporate actions"
    )
    symbols: tuple[str, ...] = Field((), description="symbols to load; empty loads every symbol in the file")
    start: date | None = None
    end: date | None = None
    quality_policy: Literal["repair", "strict"] = Field(
        "repair", description="repair: fix or drop bad rows and report them; strict: stop on the first defect"
    )
    max_abs_return: float = Field(
        1.0, gt=0, description="a close-to-close move larger than this fraction is reported as an outlier"
    )

    @model_validator(mode="after")
    def _range(self) -> DataConfig:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if (self.path is None) == (self.store is None):
            raise ValueError("give exactly one of path (a Parquet file) or store (the market-data store)")
        return self


class AccountConfig(_Model):
    starting_cash_usd: PositiveDecimal = Decimal(100_000)
    account_type: Literal["margin", "cash"] = "margin"
    margin_multiplier: Decimal = Field(Decimal(2), ge=1, le=4, description="Reg-T overnight buying power multiple")


class FeeConfig(_Model):
    """Alpaca fees: equities are commission-free but sells pay the SEC fee and FINRA TAF."""

    commission_per_order_usd: Decimal = Field(Decimal(0), ge=0)
    sec_fee_per_million_usd: Decimal = Field(Decimal("27.80"), ge=0, description="on sell notional")
    finra_taf_per_share_usd: Decimal = Field(Decimal("0.000166"), ge=0, description="on shares sold")
    finra_taf_max_usd: Decimal = Field(Decimal("8.30"), ge=0, description="cap per trade")
    option_fee_per_contract_usd: Decimal = Field(
        Decimal("0.04685"), ge=0, description="regulatory (ORF + OCC) fees per contract, buys and sells"
    )
    option_taf_per_contract_usd: Decimal = Field(Decimal("0.00279"), ge=0, description="FINRA TAF per contract sold")


class SlippageConfig(_Model):
    model: Literal["none", "fixed_bps", "square_root"] = "fixed_bps"
    bps: NonNegativeFloat = Field(1.0, description="fixed adverse slippage in basis points")
    impact_coefficient: NonNegativeFloat = Field(
        0.1, description="square_root model: impact = coefficient × daily vol × sqrt(qty / bar volume)"
    )


class LatencyConfig(_Model):
    mean_ms: NonNegativeFloat = 50.0
    jitter_ms: NonNegativeFloat = 10.0


class VenueConfig(_Model):
    seed: int = 7
    participation_rate: Fraction | None = Field(
        0.05, description="cap on a fill as a fraction of the bar's volume; null for no cap"
    )
    fees: FeeConfig = FeeConfig()
    slippage: SlippageConfig = SlippageConfig()
    latency: LatencyConfig = LatencyConfig()


class RiskConfig(_Model):
    max_order_quantity: PositiveDecimal = Decimal(100_000)
    max_order_notional_usd: PositiveDecimal = Decimal(1_000_000)
    price_collar_pct: Fraction = Field(0.10, description="limit/stop price must be within this of the reference")
    max_price_age_s: float = Field(4 * 86_400.0, gt=0, description="older reference prices deny the order")
    max_position_notional_usd: PositiveDecimal = Decimal(5_000_000)
    max_gross_exposure_usd: PositiveDecimal = Decimal(50_000_000)
    duplicate_intent_window_s: NonNegativeFloat = 60.0
    throttle_max_orders: int = Field(500, gt=0, description="orders allowed per throttle window")
    throttle_window_s: float = Field(1.0, gt=0)
    restricted_symbols: tuple[str, ...] = ()
    daily_loss_reduce_pct: Fraction = Field(0.05, description="loss vs start-of-day equity that moves to REDUCING")
    daily_loss_halt_pct: Fraction = Field(0.10, description="loss vs start-of-day equity that HALTS trading")
    max_net_delta_per_underlying: float | None = Field(
        None, gt=0, description="|net delta| per underlying after an option order, in shares-equivalent "
        "(contracts × multiplier × delta, plus shares held); null: no limit (amcp.risk._greeks)")
    max_net_gamma_per_underlying: float | None = Field(
        None, gt=0, description="|net gamma| per underlying after an option order, in shares-equivalent per "
        "1.00 move of the underlying (contracts × multiplier × gamma); null: no limit")
    max_net_vega_usd_per_underlying: float | None = Field(
        None, gt=0, description="|net vega| per underlying after an option order, in USD per 1.00 of volatility "
        "(100 vol points; contracts × multiplier × vega); null: no limit")

    @model_validator(mode="after")
    def _loss_order(self) -> RiskConfig:
        if self.daily_loss_halt_pct < self.daily_loss_reduce_pct:
            raise ValueError(
                f"daily_loss_halt_pct {self.daily_loss_halt_pct} must be >= daily_loss_reduce_pct "
                f"{self.daily_loss_reduce_pct}"
            )
        return self


class SizingConfig(_Model):
    min_trade_notional_usd: Decimal = Field(Decimal(100), ge=0, description="skip rebalance trades smaller than this")
    cash_buffer_pct: Annotated[float, Field(ge=0, lt=1)] = Field(0.02, description="capital kept uninvested")


class _StrategyBase(_Model):
    id: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]{1,48}$")
    capital_fraction: Fraction = 1.0
    symbols: tuple[str, ...] = Field((), description="universe; empty = every symbol of the data")


class MomentumConfig(_StrategyBase):
    """Cross-sectional momentum: long the top-n symbols by return over lookback, skipping the last skip bars."""

    kind: Literal["momentum"]
    lookback_bars: int = Field(126, ge=2)
    skip_bars: int = Field(21, ge=0)
    top_n: int = Field(5, ge=1)
    rebalance_bars: int = Field(21, ge=1)
    long_short: bool = False

    @model_validator(mode="after")
    def _skip(self) -> MomentumConfig:
        if self.skip_bars >= self.lookback_bars:
            raise ValueError(f"skip_bars {self.skip_bars} must be < lookback_bars {self.lookback_bars}")
        return self


class MeanReversionConfig(_StrategyBase):
    """Z-score mean reversion: buy when close is entry_z std below its mean, exit inside exit_z."""

    kind: Literal["mean_reversion"]
    window_bars: int = Field(20, ge=2)
    entry_z: float = Field(2.0, gt=0)
    exit_z: float = Field(0.5, ge=0)
    max_positions: int = Field(10, ge=1)
    allow_short: bool = False

    @model_validator(mode="after")
    def _z(self) -> MeanReversionConfig:
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z {self.exit_z} must be < entry_z {self.entry_z}")
        return self


class MovingAverageCrossConfig(_StrategyBase):
    """Moving-average crossover: buy ``quantity`` when fast SMA crosses above slow, sell it back below."""

    kind: Literal["ma_cross"]
    fast_bars: int = Field(10, ge=1)
    slow_bars: int = Field(30, ge=2)
    quantity: PositiveDecimal = Decimal(100)

    @model_validator(mode="after")
    def _windows(self) -> MovingAverageCrossConfig:
        if self.fast_bars >= self.slow_bars:
            raise ValueError(f"fast_bars {self.fast_bars} must be < slow_bars {self.slow_bars}")
        return self


class MLSignalConfig(_StrategyBase):
    """Trade the scores of the signal service: long the best and short the worst, or long-only top-k."""

    kind: Literal["ml_signal"]
    endpoint: str = Field(
        "http://127.0.0.1:8000", pattern=r"^(https?://\S+|serve://[A-Za-z0-9_\-]{1,64})$",
        description="signal service base URL (POST /v1/signals), or serve://<app name> for a Serve handle")
    timeout_s: float = Field(2.0, gt=0, description="wait this long for scores, then hold positions")
    history_bars: int = Field(
        120, ge=1, description="bars per symbol sent (at least the model's history_bars)")
    rebalance_bars: int = Field(5, ge=1, description="cycles between rebalances")
    portfolio: Literal["long_short", "long_only"] = "long_short"
    quantile: float = Field(
        0.2, gt=0, le=0.5, description="long_short: fraction of scored symbols held each side")
    top_k: int = Field(5, ge=1, description="long_only: symbols held, each at weight 1 / top_k")
    min_scored: int = Field(2, ge=1, description="fewer scored symbols than this: hold positions")


StrategyConfig = Annotated[
    MomentumConfig | MeanReversionConfig | MovingAverageCrossConfig | MLSignalConfig, Field(discriminator="kind")
]


class RayConfig(_Model):
    address: str | None = Field(None, description="Ray address; null uses RAY_ADDRESS or starts a local Ray")
    namespace: str = "amcp"
    num_strategy_actors: int = Field(1, ge=1)
    actor_num_cpus: NonNegativeFloat = Field(0.0, description="CPUs reserved per trading-plane actor")
    cycles_per_call: int = Field(50, ge=1, description="cycles the orchestrator runs per driver call")
    checkpoint_every_cycles: int = Field(
        50, ge=1,
        description="the orchestrator checkpoints after every this many cycles (to the journal database); "
        "a restart re-runs at most this many cycles. Each checkpoint costs ~10-120 ms on the sample, "
        "growing with the run (measured), so replays checkpoint sparsely; the broker-backed modes "
        "(paper_server, live) checkpoint every cycle whatever this says",
    )
    orchestrator_max_restarts: int = Field(
        3, ge=0, description="times Ray restarts a crashed paper-mode orchestrator; it resumes from its checkpoint"
    )


class JournalConfig(_Model):
    url: str | None = Field(None, description="SQLAlchemy URL; null writes journal.sqlite in the run folder")


class FileSourceConfig(_Model):
    """Ingest bars from a CSV or Parquet file (a local path or fsspec URL)."""

    kind: Literal["file"] = "file"
    path: str = Field(..., min_length=1)
    timeframe: Literal["1Day", "1Min"] = Field("1Day", description="1Day: a date column; 1Min: UTC timestamps")
    symbol: str | None = Field(None, description="the symbol of a single-symbol file without a symbol column")
    symbols: tuple[str, ...] = Field((), description="ingest only these symbols; empty ingests every symbol")


class AlpacaSourceConfig(_Model):
    """Ingest from Alpaca's historical market-data API (alpaca-py).

    The API key pair is read from the environment variables named by ``key_env``/``secret_env``.
    """

    kind: Literal["alpaca"] = "alpaca"
    symbols: tuple[str, ...] = Field(..., min_length=1)
    start: date
    end: date | None = Field(None, description="last day to fetch; null means today")
    timeframe: Literal["1Day", "1Min", "tick"] = Field(
        "1Day", description="1Day → equities/daily, 1Min → equities/intraday, tick (trades) → equities/tick"
    )
    feed: Literal["iex", "sip"] | None = Field(None, description="null uses the account's default feed")
    url_override: str | None = Field(None, description="market-data API base URL (a local Alpaca-compatible server)")
    key_env: str = Field("APCA_API_KEY_ID", min_length=1)
    secret_env: str = Field("APCA_API_SECRET_KEY", min_length=1)
    rate_limit_per_minute: float = Field(200.0, gt=0, description="client-side limit on requests (Alpaca allows 200/min)")
    max_retries: int = Field(5, ge=0, description="retries of a request after a 429, a 5xx or a dropped connection")
    chunk_days: int = Field(365, ge=1, description="days per request window: the unit of resume after a crash")
    corporate_actions: bool = Field(True, description="also ingest splits and dividends for the symbols")
    option_underlyings: tuple[str, ...] = Field((), description="also snapshot the option chain of these underlyings")

    @model_validator(mode="after")
    def _range(self) -> AlpacaSourceConfig:
        if self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


IngestSourceConfig = Annotated[FileSourceConfig | AlpacaSourceConfig, Field(discriminator="kind")]


class IngestQualityConfig(_Model):
    policy: Literal["repair", "quarantine", "strict"] = Field(
        "repair",
        description="repair: fix or drop bad rows; quarantine: set bad rows aside unchanged; strict: fail the symbol",
    )
    max_abs_return: float = Field(1.0, gt=0, description="a close-to-close move larger than this is reported as an outlier")


class IngestRayConfig(_Model):
    address: str | None = Field(None, description="Ray address; null uses RAY_ADDRESS or starts a local Ray")
    symbols_per_task: int = Field(10, ge=1, description="symbols one Ray task ingests")
    max_tasks_in_flight: int = Field(8, ge=1)
    task_num_cpus: NonNegativeFloat = Field(1.0, description="CPUs reserved per ingest task")


# --------------------------------------------------------------------------- jobs


class _JobConfig(_Model):
    run: RunConfig = RunConfig()
    data: DataConfig
    account: AccountConfig = AccountConfig()
    venue: VenueConfig = VenueConfig()
    risk: RiskConfig = RiskConfig()
    sizing: SizingConfig = SizingConfig()
    strategies: tuple[StrategyConfig, ...] = Field(..., min_length=1)

    @field_validator("strategies")
    @classmethod
    def _unique_ids(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        ids = [s.id for s in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"strategy ids must be unique, repeated: {dupes}")
        total = sum(s.capital_fraction for s in value)
        if total > 1.0 + 1e-9:
            raise ValueError(f"capital_fraction of all strategies sums to {total:g}, more than 1")
        return value


class BacktestConfig(_JobConfig):
    """``configs/backtest.yaml``: the in-process event-driven backtest."""

    kind: Literal["backtest"] = "backtest"


class AlpacaBrokerSettings(_Model):
    """The Alpaca (or Alpaca-compatible) account the live modes trade through.

    The key pair never comes from YAML: ``key_env`` and ``secret_env`` name the environment
    variables that hold it (read when the plane is built). ``paper_server`` mode ignores them:
    the job's own server gets a fresh local key pair.
    """

    paper: bool = Field(True, description="Alpaca's paper endpoint (false: the live, real-money endpoint)")
    url_override: str | None = Field(
        None, pattern=r"^https?://\S+$", description="trading REST base URL of an Alpaca-compatible server"
    )
    stream_url_override: str | None = Field(
        None, pattern=r"^wss?://\S+$", description="trade_updates websocket URL of an Alpaca-compatible server"
    )
    key_env: str = Field("APCA_API_KEY_ID", min_length=1, description="environment variable holding the key id")
    secret_env: str = Field("APCA_API_SECRET_KEY", min_length=1, description="environment variable holding the secret")
    rate_limit_per_minute: float = Field(200.0, gt=0, description="client-side limit on REST requests (Alpaca allows 200/min)")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one REST request, seconds")
    stream_timeout_s: float = Field(
        5.0, gt=0, description="paper_server: wait this long for a batch's trade updates, then reconcile over REST"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="wait this long for the trade_updates stream at start")

    def credentials(self, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
        """The key pair from the environment variables ``key_env`` and ``secret_env``.

        Raises:
            ConfigError: naming the variable that is unset or empty.
        """
        env = os.environ if environ is None else environ
        missing = [name for name in (self.key_env, self.secret_env) if not env.get(name)]
        if missing:
            raise ConfigError(
                f"broker: environment variable(s) {', '.join(missing)} unset or empty "
                f"(broker.key_env / broker.secret_env name where the Alpaca key pair is read from)"
            )
        return env[self.key_env], env[self.secret_env]


class StateConfig(_Model):
    """The live modes' durable trading state and hash-chained audit log (one SQL database)."""

    database_url: str | None = Field(
        None, min_length=1, description="SQLAlchemy URL; null: DATABASE_URL if set, else state.sqlite in the run folder"
    )

    def resolve(self, run_dir: Path, environ: Mapping[str, str] | None = None) -> str:
        """The database URL to use for a run whose folder is ``run_dir``."""
        env = os.environ if environ is None else environ
        return self.database_url or env.get("DATABASE_URL") or f"sqlite:///{(run_dir / 'state.sqlite').resolve()}"


class EventsConfig(_Model):
    """Where the live modes publish every recorded order event (Redis Streams)."""

    redis_url: str | None = Field(None, min_length=1, description="redis://host:port/db; null publishes nothing")
    stream: str = Field("amcp:events", min_length=1, description="the stream's key")


class LiveDataConfig(_Model):
    """Mode ``live``'s market data: Alpaca's stock stream of minute bars, one daily cycle per session.

    The key pair is the broker's (``broker.key_env`` / ``broker.secret_env``): Alpaca serves
    market data and trading to the same account key.
    """

    feed: Literal["iex", "sip"] = Field("iex", description="stock feed: iex (free plan) or sip (all exchanges)")
    stream_url_override: str | None = Field(
        None, pattern=r"^wss?://\S+$", description="stock stream websocket URL of an Alpaca-compatible server"
    )
    rest_url_override: str | None = Field(
        None, pattern=r"^https?://\S+$", description="market-data REST base URL (gap backfill) of such a server"
    )
    backfill: bool = Field(True, description="fetch the minute bars a stream gap lost over REST")
    exchange: str = Field("XNYS", min_length=1, description="exchange calendar of the sessions (XNYS, XNAS)")
    close_grace_s: float | None = Field(
        120.0, ge=0,
        description="a session's cycle runs at its close plus this many wall-clock seconds, or at the first "
        "bar after the close if sooner; null: only at that bar (a replayed feed, whose bars are not in real time)",
    )
    poll_timeout_s: float = Field(1.0, gt=0, description="how long one orchestrator call waits for market data")


class TradeConfig(_JobConfig):
    """``configs/paper.yaml``, ``paper_server.yaml``, ``live.yaml``: the trading plane on Ray.

    ``paper`` replays history through the simulated venue; ``paper_server`` replays it into
    amcp's Alpaca-compatible paper server and trades through alpaca-py and ``trade_updates``;
    ``live`` trades at Alpaca (paper or live endpoint, ``broker``).
    """

    kind: Literal["trade"] = "trade"
    mode: Literal["paper", "paper_server", "live"] = Field(
        "paper", description="paper: simulated venue; paper_server: local Alpaca-compatible server; live: Alpaca"
    )
    ray: RayConfig = RayConfig()
    journal: JournalConfig = JournalConfig()
    broker: AlpacaBrokerSettings = AlpacaBrokerSettings()
    state: StateConfig = StateConfig()
    events: EventsConfig = EventsConfig()
    live_data: LiveDataConfig = LiveDataConfig()

    @model_validator(mode="after")
    def _server_urls(self) -> TradeConfig:
        if self.mode == "paper_server" and (self.broker.url_override or self.broker.stream_url_override):
            raise ValueError(
                f"broker.url_override / broker.stream_url_override must be null in mode paper_server (the job "
                f"starts its own server), got {self.broker.url_override!r} / {self.broker.stream_url_override!r}"
            )
        if bool(self.broker.url_override) != bool(self.broker.stream_url_override):
            raise ValueError(
                f"give both broker.url_override and broker.stream_url_override or neither, got "
                f"{self.broker.url_override!r} / {self.broker.stream_url_override!r}"
            )
        return self


class IngestConfig(_Model):
    """``configs/ingest.yaml``: load bars into the market-data store (files or Alpaca)."""

    kind: Literal["ingest"] = "ingest"
    run: RunConfig = RunConfig(name="ingest")
    store: StoreConfig = StoreConfig()
    source: IngestSourceConfig
    quality: IngestQualityConfig = IngestQualityConfig()
    ray: IngestRayConfig = IngestRayConfig()


# --------------------------------------------------------------------------- features job (pipelines/features.py)


class FeatureSelectionConfig(_Model):
    names: tuple[str, ...] = Field((), description="features to compute (series or cross-sectional); empty = all")


class FeatureLabelConfig(_Model):
    forward_return_horizons: tuple[int, ...] = Field(
        (1, 5, 20), description="label_fwd_ret_<h> = close[t+h]/close[t] - 1 on the date axis, for each h")

    @field_validator("forward_return_horizons")
    @classmethod
    def _horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(h < 1 for h in value) or len(set(value)) != len(value):
            raise ValueError(f"horizons must be distinct whole numbers of bars >= 1, got {list(value)}")
        return value


class FeatureRayConfig(_Model):
    address: str | None = Field(None, description="Ray address; null uses RAY_ADDRESS or starts a local Ray")
    symbols_per_task: int = Field(8, ge=1, description="symbols one feature task computes")
    task_num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per feature task")
    max_tasks_in_flight: int = Field(8, ge=1, description="feature tasks running or queued at once")


class FeatureOutputConfig(_Model):
    store: StoreConfig | None = Field(
        None, description="feature store root; null = <run.output_dir>/<run-id>/features")
    partition_by: Literal["symbol", "year"] = Field(
        "symbol", description="one Parquet file per symbol or per year")


class FeaturesJobConfig(_Model):
    """``configs/features.yaml``: compute features and labels into the feature store."""

    kind: Literal["features"] = "features"
    run: RunConfig = RunConfig(name="features")
    data: DataConfig
    features: FeatureSelectionConfig = FeatureSelectionConfig()
    labels: FeatureLabelConfig = FeatureLabelConfig()
    ray: FeatureRayConfig = FeatureRayConfig()
    output: FeatureOutputConfig = FeatureOutputConfig()


# --------------------------------------------------------------------------- scan job (pipelines/scan.py)
# The scanner's own settings live here too (re-exported by amcp.options.scanner), so that importing
# this module never pulls in the numpy/numba scan kernels.

ExerciseStyle = Literal["american", "european"]
StructureFamily = Literal["vertical", "butterfly", "iron_condor"]


class LiquidityFilter(_Model):
    """Which contracts are tradeable; a contract must pass every rule (NaN fails a rule that is set)."""

    min_bid: float = Field(0.01, gt=0, description="lowest bid a contract needs (per unit of underlying)")
    min_open_interest: float = Field(0.0, ge=0, description="lowest open interest; 0 also admits an unknown one")
    min_volume: float = Field(0.0, ge=0, description="lowest day volume; 0 also admits an unknown one")
    max_spread_abs: float | None = Field(None, gt=0, description="widest ask − bid (per unit of underlying)")
    max_spread_rel: float | None = Field(None, gt=0, description="widest (ask − bid) / mid")


class ScannerConfig(_Model):
    """What :func:`amcp.options.scanner.scan_chain` looks for and how far it searches."""

    style: ExerciseStyle = Field("american", description="exercise style of the chain's options (US equity: american)")
    filters: LiquidityFilter = LiquidityFilter()
    min_violation: float = Field(0.001, ge=0, description="smallest arbitrage size reported (per unit of underlying)")
    include_mid_violations: bool = Field(False, description="also report the violations at mid prices")
    arbitrage_max_strikes_apart: int | None = Field(
        None, ge=1, description="widest pair/triple in listed strikes for the arbitrage checks (null: all)")
    structures: tuple[StructureFamily, ...] = Field(("vertical", "butterfly", "iron_condor"), min_length=0,
                                                    description="structure families to rank")
    vertical_max_strikes_apart: int | None = Field(None, ge=1,
                                                   description="widest vertical in listed strikes (null: all)")
    butterfly_max_wing_strikes: int | None = Field(10, ge=1, description="widest butterfly wing in listed strikes")
    condor_max_wing_strikes: int | None = Field(5, ge=1, description="widest iron-condor wing in listed strikes")
    min_risk: float = Field(0.01, gt=0, description="a max loss below this counts as this in ev_per_risk")
    top_per_structure: int = Field(20, ge=1, description="candidates kept per structure")
    block_size: int = Field(1 << 20, ge=1024, description="candidates evaluated per array block (bounds memory)")


class VendorFileSource(_Model):
    """A historicaloptiondata.com end-of-day file (Parquet or CSV), every chain in it or a selection."""

    kind: Literal["vendor_file"] = "vendor_file"
    path: str = Field(min_length=1, description="Parquet or CSV file in the vendor layout")
    underlyings: tuple[str, ...] = Field((), description="underlyings to scan; empty scans all in the file")
    quote_dates: tuple[date, ...] = Field((), description="quote dates to scan; empty scans all in the file")
    max_chains: int | None = Field(None, ge=1, description="scan at most this many chains (the first by date)")


class StoreSource(_Model):
    """Chains in the market-data store's ``options/chains`` dataset."""

    kind: Literal["store"] = "store"
    store: StoreConfig = StoreConfig()
    underlyings: tuple[str, ...] = Field(min_length=1, description="underlyings to scan")
    quote_dates: tuple[date, ...] = Field(min_length=1, description="quote dates (New York) to scan")


class SyntheticUnderlying(_Model):
    """One synthetic chain: its underlying and smile (see :func:`amcp.options.synthetic.synthetic_chain`)."""

    symbol: str = Field(pattern=r"^[A-Z0-9.]{1,6}$", description="root symbol, 1-6 upper-case characters")
    spot: float = Field(gt=0, description="the underlying's price")
    strike_step: float = Field(gt=0, description="distance between strikes (a multiple of 0.001)")
    atm_vol: float = Field(0.2, gt=0, description="ATM vol of the shortest expiries (0.2 = 20 %)")
    skew: float = Field(-0.1, description="ATM slope of vol per unit of log-moneyness (negative: put skew)")
    curvature: float = Field(2.0, gt=0, description="SSVI φ: how fast the smile turns up away from the money")
    term: float = Field(0.0, description="ATM vol change per year of time to expiry")


_DEFAULT_SYNTHETIC = (
    SyntheticUnderlying(symbol="SYNA", spot=100.0, strike_step=1.0, atm_vol=0.2, skew=-0.1),
    SyntheticUnderlying(symbol="SYNB", spot=250.0, strike_step=2.5, atm_vol=0.35, skew=-0.2, term=-0.05),
    SyntheticUnderlying(symbol="SYNC", spot=40.0, strike_step=0.5, atm_vol=0.6, skew=0.05, curvature=1.5),
)


class SyntheticSource(_Model):
    """Arbitrage-free synthetic chains, one per underlying, priced on an SSVI smile: no data needed.

    Rate and dividend yield come from ``market``; underlying ``i`` draws its open interest and
    volume with seed ``seed + i``.
    """

    kind: Literal["synthetic"] = "synthetic"
    as_of: AwareDatetime = Field(datetime(2024, 1, 2, 15, 0, tzinfo=timezone.utc),
                                 description="quote time of every chain (timezone-aware)")
    underlyings: tuple[SyntheticUnderlying, ...] = Field(_DEFAULT_SYNTHETIC, min_length=1,
                                                         description="one chain per entry")
    expiries_days: tuple[int, ...] = Field((7, 14, 30, 60, 91, 182), min_length=1,
                                           description="calendar days from the quote date to each expiry")
    strike_width: float = Field(0.3, gt=0, lt=1, description="strikes within spot·(1 ± strike_width)")
    half_spread_abs: float = Field(0.01, ge=0, description="fixed part of the half bid-ask spread")
    half_spread_rel: float = Field(0.01, ge=0, description="part of the half spread proportional to the mid")
    open_interest: float = Field(500.0, ge=0, description="mean open interest per contract")
    volume: float = Field(50.0, ge=0, description="mean day volume per contract")
    seed: int = Field(0, ge=0, description="seed of the open-interest and volume draws")


ScanSourceConfig = Annotated[SyntheticSource | VendorFileSource | StoreSource, Field(discriminator="kind")]


class MarketConfig(_Model):
    """What the sources do not carry, given to every chain."""

    rate: float = Field(0.0, ge=-0.05, le=0.5, description="risk-free rate, continuous annual decimal")
    div_yield: float = Field(0.0, ge=-0.5, le=0.5, description="dividend (or borrow) yield, continuous annual decimal")


class SurfaceFitConfig(_Model):
    """Arguments of :func:`amcp.options.surface.fit_surface`."""

    forward_method: Literal["parity", "carry"] = Field("parity", description="forward from put-call parity or carry")
    min_quotes: int = Field(6, ge=5, description="expiries with fewer out-of-the-money quotes are not fitted")
    min_t_years: float = Field(2.0 / 365.0, ge=0, description="expiries closer than this are not fitted")


class ScanRayConfig(_Model):
    address: str | None = Field(None, description="Ray address; null uses RAY_ADDRESS or starts a local Ray")
    task_num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per chain task")
    max_tasks_in_flight: int = Field(8, ge=1, description="chain tasks running or queued at once")


class ScanOutputConfig(_Model):
    format: Literal["parquet", "csv"] = Field("parquet", description="file format of the result tables")
    top: int = Field(10, ge=0, description="best candidates (by ev_per_risk) shown in the JSON summary")


class ScanJobConfig(_Model):
    """``configs/scan.yaml``: scan option chains for arbitrage and ranked candidates."""

    kind: Literal["scan"] = "scan"
    run: RunConfig = RunConfig(name="scan")
    source: ScanSourceConfig = SyntheticSource()
    market: MarketConfig = MarketConfig()
    surface: SurfaceFitConfig = SurfaceFitConfig()
    scanner: ScannerConfig = ScannerConfig()
    ray: ScanRayConfig = ScanRayConfig()
    output: ScanOutputConfig = ScanOutputConfig()


# --------------------------------------------------------------------------- signal service (serve/signals.py)


class ServeSignalsConfig(_Model):
    """``configs/serve_signals.yaml``: where the models are, what to serve, how to batch."""

    kind: str = Field("serve_signals", pattern=r"^serve_signals$")
    registry: StoreConfig = Field(
        ..., description="the model registry's root (a folder or s3:// URL) and S3 options")
    version: str | None = Field(None, description="serve this version; null follows the production pointer")
    poll_interval_s: float = Field(
        5.0, gt=0, description="how often a replica re-reads the production pointer")
    feature_registry: str = Field(
        "amcp.features:default_registry", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function returning the FeatureRegistry the model's features come from")
    max_batch_size: int = Field(16, ge=1, description="requests scored together in one predict call")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="how long a batch waits to fill; 0 scores at once what has queued (under load "
        "requests queue while a batch is scored, so batches still fill)")
    score_in_thread: bool = Field(
        False, description="false: a batch is scored on the replica's event loop (lowest latency; the loop answers "
        "nothing else for the batch's time, at most max_batch_size requests' features and predict); true: in a "
        "worker thread, so the loop keeps reading requests and answering GET /v1/model meanwhile (the hand-off "
        "cost 0.8-1.6 ms per request, p50, on a 2-core machine scoring 50 symbols with 211 features)")
    max_symbols: int = Field(5000, ge=1, description="symbols one request may ask for")
    max_bars: int = Field(5000, ge=1, description="bars one symbol may carry")
    num_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(64, ge=1, description="requests a replica accepts at once")
    replica_num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per replica")
    app_name: str = Field("signals", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    route_prefix: str = Field("/", pattern=r"^/\S*$")
    http_host: str = Field("127.0.0.1", min_length=1)
    http_port: int = Field(8000, ge=1, le=65535)
    ingress: Literal["proxy", "direct"] = Field(
        "proxy", description="proxy: HTTP through Serve's proxy on http_port only; direct: each replica also "
        "serves HTTP itself on a port from direct_port up (Ray Serve's direct ingress, no proxy hop)")
    direct_port: int = Field(
        8100, ge=1, le=65435, description="direct ingress: the first replica port (replicas take the next free "
        "ones, up to direct_port + 100)")
    ray_address: str | None = Field(
        None, description="Ray address; null uses RAY_ADDRESS or starts a local Ray")
    namespace: str = "amcp"


# --------------------------------------------------------------------------- models (amcp/models)
# The hyper-parameters of the six signal-model families live here (re-exported by
# amcp.models.tabular and amcp.models.sequence), so that reading a train config never imports
# numpy, torch, scikit-learn or amcp.models.


class ModelParams(BaseModel):
    """Base of every family's hyper-parameters: frozen, unknown keys rejected, ``seed`` for determinism."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    seed: int = Field(0, ge=0, description="seed of every random number generator the family uses")


class RandomForestParams(ModelParams):
    """scikit-learn ``RandomForestRegressor`` hyper-parameters."""

    family: Literal["random_forest"] = "random_forest"
    n_estimators: int = Field(100, ge=1, le=5000, description="trees")
    max_depth: int | None = Field(8, ge=1, description="maximum tree depth; null grows until leaves are pure")
    min_samples_leaf: int = Field(50, ge=1, description="minimum rows in a leaf (returns are noisy: keep it large)")
    max_features: float = Field(0.3, gt=0, le=1, description="fraction of features tried at each split")
    max_samples: float | None = Field(0.5, gt=0, le=1, description="fraction of rows bootstrapped per tree")
    n_jobs: int = Field(1, ge=1, description="threads")


class SupportVectorParams(ModelParams):
    """scikit-learn ``SVR`` (RBF kernel) on standardised, median-imputed features and a standardised target.

    The kernel SVR costs O(n²)–O(n³) in training rows, so at most ``max_train_rows`` rows,
    drawn uniformly without replacement with ``seed``, are used to fit.
    """

    family: Literal["svm"] = "svm"
    C: float = Field(1.0, gt=0, description="regularisation: larger fits the training rows more closely")
    epsilon: float = Field(0.5, ge=0, description="width of the insensitive tube, in standard deviations of y")
    gamma: float | Literal["scale", "auto"] = Field("scale", description="RBF kernel width")
    max_train_rows: int = Field(5000, ge=10, description="rows subsampled for fitting (SVR scales badly with rows)")


class XGBoostParams(ModelParams):
    """``xgboost.XGBRegressor`` hyper-parameters (``tree_method='hist'`` on the CPU)."""

    family: Literal["xgboost"] = "xgboost"
    n_estimators: int = Field(200, ge=1, le=20000, description="boosting rounds")
    max_depth: int = Field(6, ge=1, le=32)
    learning_rate: float = Field(0.05, gt=0, le=1)
    subsample: float = Field(0.8, gt=0, le=1, description="fraction of rows sampled per round")
    colsample_bytree: float = Field(0.8, gt=0, le=1, description="fraction of features sampled per tree")
    min_child_weight: float = Field(1.0, ge=0)
    reg_lambda: float = Field(1.0, ge=0, description="L2 penalty on leaf weights")
    early_stopping_rounds: int | None = Field(None, ge=1, description="stop when the validation loss stalls this long")
    n_jobs: int = Field(1, ge=1, description="threads")


class LightGBMParams(ModelParams):
    """``lightgbm.LGBMRegressor`` hyper-parameters (run with ``deterministic=True``)."""

    family: Literal["lightgbm"] = "lightgbm"
    n_estimators: int = Field(200, ge=1, le=20000, description="boosting rounds")
    num_leaves: int = Field(31, ge=2, le=131072)
    max_depth: int = Field(-1, ge=-1, description="-1: no limit")
    learning_rate: float = Field(0.05, gt=0, le=1)
    subsample: float = Field(0.8, gt=0, le=1, description="fraction of rows bagged each round")
    colsample_bytree: float = Field(0.8, gt=0, le=1, description="fraction of features sampled per tree")
    min_child_samples: int = Field(20, ge=1)
    reg_lambda: float = Field(0.0, ge=0, description="L2 penalty on leaf weights")
    early_stopping_rounds: int | None = Field(None, ge=1, description="stop when the validation loss stalls this long")
    n_jobs: int = Field(1, ge=1, description="threads")


class _SequenceParams(ModelParams):
    lookback: int = Field(10, ge=1, le=512, description="bars of features per sample")
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    max_train_rows: int | None = Field(None, ge=10, description="fit on at most this many rows, drawn with seed")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="auto: CUDA when available, else CPU")


class LSTMParams(_SequenceParams):
    """LSTM over the window; the last hidden state feeds a linear head."""

    family: Literal["lstm"] = "lstm"
    hidden_size: int = Field(32, ge=1, le=4096)
    num_layers: int = Field(1, ge=1, le=8)


class TransformerParams(_SequenceParams):
    """Transformer encoder over the projected window plus a learned position embedding; the last token feeds a linear head."""

    family: Literal["transformer"] = "transformer"
    d_model: int = Field(32, ge=2, le=4096)
    nhead: int = Field(4, ge=1, le=64)
    num_layers: int = Field(1, ge=1, le=12)
    dim_feedforward: int = Field(64, ge=1, le=16384)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerParams:
        if self.d_model % self.nhead:
            raise ValueError(f"d_model {self.d_model} must be a multiple of nhead {self.nhead}")
        return self


ModelSpec = Annotated[
    RandomForestParams | SupportVectorParams | XGBoostParams | LightGBMParams | LSTMParams | TransformerParams,
    Field(discriminator="family"),
]


# --------------------------------------------------------------------------- train job (pipelines/train.py)


class FeatureSourceConfig(_Model):
    """Where the features come from: a feature set written by :func:`amcp.features.store.write_features`."""

    root: str = Field(min_length=1, description="feature-store root: a folder or fsspec URL")
    columns: tuple[str, ...] = Field((), description="feature columns to train on; empty: every column but the label and exclude")
    exclude: tuple[str, ...] = Field((), description="columns never used as features")
    label_prefix: str = Field("label_", min_length=1,
                              description="columns starting with this are labels (look ahead): never features")


class TrainLabelConfig(_Model):
    horizon: int = Field(5, ge=1, le=252, description="bars of the forward return a model predicts")
    column: str | None = Field(None, description="a label column of the feature set; null: computed from data closes")
    target: Literal["return", "rank"] = Field(
        "rank", description="train on the forward return, or on its cross-sectional percentile rank − 0.5")


class FoldConfig(_Model):
    n_folds: int = Field(3, ge=1, le=100)
    train_size: int = Field(500, ge=1, description="dates per training window (rolling) or of the first one (expanding)")
    test_size: int | None = Field(None, ge=1, description="dates per test window; null splits the rest equally")
    embargo: int = Field(5, ge=0, description="dates after each test window dropped from later training")
    window: Literal["expanding", "rolling"] = "rolling"


class EvaluationConfig(_Model):
    quantile: float = Field(0.2, gt=0, le=0.5, description="share of symbols held long, and short")
    rebalance_every: int = Field(5, ge=1, description="dates between long-short rebalances")
    cost_bps: float = Field(5.0, ge=0, description="cost per unit of traded weight, basis points; the engine: "
                                                   "adverse slippage per fill, basis points of its price")
    momentum_window: int = Field(20, ge=1, description="lookback of the momentum baseline, in bars")
    engine: bool = Field(True, description="also run each model's all-fold long-short book through "
                                           "the backtest engine")
    starting_cash_usd: float = Field(1_000_000.0, gt=0, description="the engine account's starting cash, USD")
    participation_rate: float | None = Field(
        0.05, gt=0, le=1, description="the engine's cap on a fill as a fraction of the bar's volume; null: no cap")


class TrainRayConfig(_Model):
    address: str | None = Field(None, description="Ray address; null uses RAY_ADDRESS or starts a local Ray")
    task_num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per fit task")
    task_num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per torch fit (set device: auto or cuda too)")
    max_tasks_in_flight: int = Field(4, ge=1, description="fit tasks running or queued at once")
    use_ray_train: bool = Field(False, description="fit torch families with Ray Train's TorchTrainer")
    train_workers: int = Field(1, ge=1, description="data-parallel Ray Train workers per torch fit")


class RegistryConfig(_Model):
    enabled: bool = Field(False, validation_alias="register",
                          description="YAML key `register`: register each family's last-fold model at the end")
    root: str = Field("models/registry", min_length=1, description="ModelRegistry root")


class TrainJobConfig(_Model):
    """``configs/train.yaml``: train and compare signal models on walk-forward folds."""

    kind: Literal["train"] = "train"
    run: RunConfig = RunConfig(name="train")
    features: FeatureSourceConfig
    data: DataConfig
    label: TrainLabelConfig = TrainLabelConfig()
    folds: FoldConfig = FoldConfig()
    models: tuple[ModelSpec, ...] = Field(min_length=1)
    evaluation: EvaluationConfig = EvaluationConfig()
    ray: TrainRayConfig = TrainRayConfig()
    registry: RegistryConfig = RegistryConfig()

    @field_validator("models")
    @classmethod
    def _one_per_family(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        families = [m.family for m in value]
        repeated = sorted({f for f in families if families.count(f) > 1})
        if repeated:
            raise ValueError(f"each family may appear once, repeated: {repeated}")
        return value


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def format_validation_error(error: ValidationError, source: str) -> str:
    """Render pydantic errors as ``source: key.path: message (got value)`` lines."""
    lines = []
    items = error.errors()
    for item in items:
        # pydantic also reports a tuple as too short when one of its items failed: drop that echo.
        if item["type"] == "too_short" and any(
            other is not item and other["loc"][: len(item["loc"])] == item["loc"] for other in items
        ):
            continue
        loc = ".".join(str(p) for i, p in enumerate(item["loc"]) if not _is_union_tag(item["loc"], i))
        value = item.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{…}"
        lines.append(f"{source}: {loc or '<root>'}: {item['msg']} (got {shown})")
    return "\n".join(lines)


# pydantic puts the chosen member's tag in the path of an error inside a tagged union
# (``strategies.0.momentum.lookback_bars``); these tags are dropped from the paths shown. A tag is
# dropped only right after a field in _UNION_FIELDS (or an item of one), since some tags are also
# field names: ``store`` is the scan source's tag but also a field (``data.store.url``).
_UNION_TAGS = {
    "momentum", "mean_reversion", "ma_cross", "ml_signal",  # strategies
    "file", "alpaca",  # ingest source
    "vendor_file", "store", "synthetic",  # scan source
    "random_forest", "svm", "xgboost", "lightgbm", "lstm", "transformer",  # train models
}
_UNION_FIELDS = {"strategies", "source", "models"}


def _is_union_tag(loc: tuple[int | str, ...], i: int) -> bool:
    """Whether ``loc[i]`` is the tag of a tagged union, not a field name."""
    if not (isinstance(loc[i], str) and loc[i] in _UNION_TAGS) or i == 0:
        return False
    holder = loc[i - 2] if isinstance(loc[i - 1], int) and i >= 2 else loc[i - 1]
    return holder in _UNION_FIELDS


def parse_config(data: Any, model: type[ConfigT], source: str = "<config>") -> ConfigT:
    """Validate a mapping as ``model``.

    Raises:
        ConfigError: naming every bad key and its value.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(path: str | Path, model: type[ConfigT]) -> ConfigT:
    """Read a YAML config file and validate it as ``model``; the only reader of config files.

    Raises:
        ConfigError: if the file is missing, not YAML, or any key or value is invalid.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return parse_config(data, model, str(file))
