"""The run's broker key pairs, kept out of Ray's cluster metadata.

Ray keeps an actor's ``runtime_env`` and its creation task (the constructor's arguments) in the
GCS, where anyone with access to the cluster reads them (the dashboard, ``ray.util.state``). So
no key pair travels that way. The driver reads it (:meth:`amcp.config.AlpacaBrokerSettings.credentials`,
or makes a fresh one for amcp's paper server) and puts it into the run's :class:`CredentialVault`:
a named actor the driver owns (:func:`credential_vault_name`, namespace ``amcp``) that holds key
pairs in its memory only. Actors get a :class:`CredentialRef` instead, a picklable pointer to a
vault entry, and resolve it in their constructor: an actor Ray restarts runs its constructor
again and resolves it again.

The vault lives as long as the driver holds its handle; :func:`stop_credential_vault` ends it
with the run. An actor (re)started after that cannot get its key pair: a clear
:class:`~amcp.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

from amcp.errors import ConfigError

NAMESPACE = "amcp"  # the vault's namespace: that of the orchestrator (actors.orchestrator.NAMESPACE)


def credential_vault_name(run_id: str) -> str:
    """The Ray name of a run's :class:`CredentialVault` (namespace ``amcp``)."""
    return f"credential-vault-{run_id}"


class CredentialVault:
    """Key pairs by entry name, in this process's memory only: never written, logged or in a repr."""

    def __init__(self) -> None:
        self._pairs: dict[str, tuple[str, str]] = {}

    def put(self, name: str, key: str, secret: str) -> None:
        """Keep the key pair ``(key, secret)`` as entry ``name`` (replacing an earlier one)."""
        self._pairs[name] = (key, secret)

    def get(self, name: str) -> tuple[str, str] | None:
        """The key pair of entry ``name``; None when the vault has no such entry."""
        return self._pairs.get(name)

    def entries(self) -> list[str]:
        """The names of the entries the vault holds, sorted."""
        return sorted(self._pairs)


CredentialVaultActor = ray.remote(num_cpus=0, max_restarts=0)(CredentialVault)


def start_credential_vault(run_id: str) -> Any:
    """Start the run's empty :class:`CredentialVault` (in the driver, before the actors that need it).

    Returns:
        The actor handle: hold it for the whole run (Ray ends an actor nobody holds a handle to,
        named or not).

    Raises:
        ConfigError: if the run's vault exists already (the run is driven from another driver).
    """
    name = credential_vault_name(run_id)
    try:
        return CredentialVaultActor.options(name=name, namespace=NAMESPACE).remote()
    except ValueError as exc:
        raise ConfigError(
            f"credential vault {name!r} (namespace {NAMESPACE!r}) exists already: run {run_id} is running from "
            f"another driver; stop it or start this one with another run id"
        ) from exc


def stop_credential_vault(run_id: str) -> None:
    """End the run's vault, and the key pairs with it; nothing when there is none."""
    try:
        vault = ray.get_actor(credential_vault_name(run_id), namespace=NAMESPACE)
    except ValueError:
        return
    ray.kill(vault)


@dataclass(frozen=True)
class CredentialRef:
    """Where an actor gets a key pair: entry ``entry`` of the vault named ``vault_name`` (picklable,
    and holding no secret, so it may travel in constructor arguments).

    Attributes:
        vault_name: the Ray name of the vault (namespace ``amcp``).
        entry: the entry's name.
        origin: where the driver takes the key pair from (the environment variables' names), for
            the errors.
    """

    vault_name: str
    entry: str
    origin: str

    def key_pair(self) -> tuple[str, str]:
        """The key pair ``(key, secret)``, from the vault.

        Raises:
            ConfigError: if the vault is not running or holds no such entry; naming the vault,
                the entry and :attr:`origin`.
        """
        try:
            vault = ray.get_actor(self.vault_name, namespace=NAMESPACE)
            pair = ray.get(vault.get.remote(self.entry))
        except (ValueError, ray.exceptions.RayActorError):
            raise ConfigError(
                f"credential vault {self.vault_name!r} (namespace {NAMESPACE!r}) is not running: the run's driver "
                f"starts it and puts the key pair from {self.origin} into entry {self.entry!r}, and it ends with "
                f"the driver (an actor restarted after that cannot get its key pair)"
            ) from None
        if pair is None:
            raise ConfigError(
                f"credential vault {self.vault_name!r} holds no entry {self.entry!r}: the run's driver puts the key "
                f"pair from {self.origin} there before it creates the orchestrator"
            )
        key, secret = pair
        return key, secret
