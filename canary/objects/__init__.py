"""What Fledge owns in the cluster: the primary workload, its Services, config copies and autoscaler.

Why this exists: each owned object is built by a pure function (spec and the
watch cache's copy in, manifest out) and compared with what it should be on
every tick (``diffing``), so a steady tick writes nothing.  ``workloads`` plans
Deployments and their config copies, ``daemonsets`` what DaemonSets need on top,
``services`` the primary/canary/apex Services, ``autoscalers`` the primary's HPA.

What it must not do: decide anything about a release (``canary.core``) or run a
tick (``canary.engine``); callers pass bodies from the watch cache and apply the
plans.  It may read ``canary.cluster`` types, never a higher subpackage.
"""
