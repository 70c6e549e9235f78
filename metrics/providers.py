"""The registry of metric providers: a MetricTemplate's ``spec.provider.type`` to the class that runs it.

Why this exists: one place says which provider types Fledge runs, and an unknown or unsupported type is a
clear spec error rather than Flagger's silent fall-back to Prometheus.

What it must not do: read Secrets or cache providers (the controller's factory does both, around
``create``), or query anything while building a provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from canary import errors, models
from metrics import base, prometheus

Builder = Callable[[base.ProviderConfig, Mapping[str, str] | None, float], base.MetricProvider]


def _prometheus(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float) -> base.MetricProvider:
    return prometheus.PrometheusProvider(config.address, secret=secret, headers=dict(config.headers),
                                         insecure_skip_verify=config.insecure_skip_verify, timeout=timeout)


BUILDERS: Mapping[str, Builder] = {models.MetricProviderType.PROMETHEUS.value: _prometheus}
# Types Flagger runs that Fledge does not yet: valid in a MetricTemplate, refused when used.
NOT_SUPPORTED = frozenset(kind.value for kind in models.MetricProviderType) - BUILDERS.keys()


def check_type(type_: str) -> None:
    """Raise SpecError on ``spec.provider.type`` unless Fledge can run this type; the caller adds the path of
    the template in front of the field."""
    if type_ in BUILDERS:
        return
    supported = ", ".join(sorted(BUILDERS))
    if type_ in NOT_SUPPORTED:
        raise errors.SpecError("spec.provider.type", f"provider {type_!r} is not supported yet by Fledge; "
                                                     f"supported: {supported}")
    raise errors.SpecError("spec.provider.type", f"unknown provider {type_!r}; supported: {supported}")


def create(config: base.ProviderConfig, secret: Mapping[str, str] | None = None, *,
           timeout: float = prometheus.DEFAULT_TIMEOUT) -> base.MetricProvider:
    """A provider for ``config``; ``secret`` is the decoded data of ``config.secret_name``, None when the
    Secret does not exist.

    Raises SpecError for an unsupported type, an invalid address, or a Secret without the keys needed.
    """
    check_type(config.type)
    if config.secret_name is not None and secret is None:
        raise errors.SpecError("spec.provider.secretRef", f"Secret {config.namespace}/{config.secret_name} "
                                                          "not found; create it, or remove secretRef")
    return BUILDERS[config.type](config, secret, timeout)
