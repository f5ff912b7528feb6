// Package analyze is stage 2 of the data path, in one place: it takes the
// sealed windows of every aggregation partition, the agents' scheduling
// lags and the agents' path reports (as they arrive on the bus, in wire
// form), and produces verdicts: which links, switches or hosts explain
// what a window's probes saw. `meshlens server`, `sim run`, `sim live`
// (through the server) and the end-to-end tests all drive this one path.
//
// # The core
//
// An Analyzer is a pure core like the aggregator's: no goroutines, no
// clock of its own. Whoever owns the clock drives it: IngestWindow with
// each partition's half of a sealed window, IngestPathData (or
// IngestPathReport) with each path report and the publisher it came from,
// SetAgentLags, and Advance(now), which localizes every window that is
// complete, in window order, and returns the verdicts. The server drives
// it on the real clock from the aggregators' subscriptions and the NATS
// subscription to meshlens.paths.>; the simulator on its virtual clock.
//
// # Partition merge
//
// A window is localized once every partition has either delivered its half
// or sealed a later window without it. An aggregator seals only windows
// that had results, and seals them in order, so a partition that moved past
// a window without delivering it had nothing in it: its half is empty, and
// the window is localized with the halves that exist. A window still
// waiting for a partition StaleAfter after an Advance first found it pending (a
// partition that stopped sealing) is dropped and counted (meshlens_analyzer_windows_dropped_total
// {reason="stale"}), as is a half that arrives for a window already
// localized or dropped (reason "late": an ingester re-sealing after a
// restart) and the oldest waiting window when more than MaxPending wait
// (reason "behind"). Windows reach the localizers strictly in order.
//
// # Joining path reports to windows
//
// A trace runs after the probe it traces and reaches the server some time
// later, possibly after the probe's window was sealed and localized. So a
// traced probe is not tied to its own window: it waits in a bounded buffer
// and joins the first window localized whose end is after the probe
// started — its own window when it arrived in time, else the next one
// localized. The localizer pools its evidence over a horizon of windows
// (localize.Config.Horizon), so a late trace still counts toward the fault
// it saw. A trace whose probe started before that horizon (of the next
// window to be localized) can no longer count and is refused as too_old at
// arrival, or expired at handover
// (meshlens_path_traces_expired_total) if it was buffered when a window
// was dropped. A trace from more than a window in the future is refused
// (from_future): it would sit in the buffer until then.
//
// # Rejections
//
// A report is taken whole or refused whole, and a refused report never
// reaches a localizer; meshlens_path_reports_rejected_total{reason} counts
// refusals and meshlens_path_reports_accepted_total acceptances:
//
//   - malformed, too_large, invalid_field, other: wire.DecodePathReport
//     refused the bytes (wire.Reason);
//   - subject_mismatch: the report's agent is not its publisher (an agent
//     speaks only for itself);
//   - unknown_host, unknown_hop, loop, too_long, not_adjacent,
//     wrong_endpoint, invalid: a traced probe is no path of this fabric
//     (localize.(*Index).ResolveTrace, the one conversion, and
//     localize.Reason);
//   - too_old, from_future: see the join above;
//   - buffer_full: MaxBufferedTraces traced probes already wait.
//
// # Verdicts and culprits
//
// Several localizers can run side by side on the same windows and traces
// (`sim run` scores meshlens beside the vote baseline); the first one's
// verdicts are the history (VerdictAt, SuspectsAt for /api/v1/suspects)
// and what alerting hears. Culprits turns a verdict into the alert board's
// culprits, leaving out agent_slow suspects (a starved agent explains
// nothing in the network).
//
// This package imports aggregate, localize, topology, wire and alert's
// Culprit type; never server, sim or api.
package analyze
