// Package alert is meshlens's alerting room: the lifecycle of alerts
// (pending → firing → resolved), their grouping into incidents that name a
// culprit, and their delivery to Alertmanager (v2 API) and to signed
// webhooks.
//
// # Lifecycle
//
// The evaluation stage (the SLO engine, through Manager.ObserveSLOs, or
// anything else through Manager.Observe) reports at each evaluation the
// conditions that hold. A condition is identified by its labels
// (fingerprint): reporting it twice, from two evaluators or two tiers with
// the same labels, is one alert. A new condition is pending; it fires once
// it has held for its For duration (immediately when For is 0); when it no
// longer holds, a pending alert is dropped and a firing one resolves.
// Resolved alerts and incidents are kept for Config.Retention. Sources
// observed at their own cadences (the SLO engine, the localizer) report
// through ObserveSource, so that one's evaluation never ends the other's
// alerts.
//
// # The localizer's own alerts
//
// A FaultWatch reads the localizer's verdicts window by window: an element
// blamed with FaultConfig.MinConfidence in Windows consecutive windows (a
// switch and one of its links named in turn do not break the run) holds a
// MeshlensFaultSuspected condition (labels element, kind, symptom,
// severity; annotations summary, description with the evidence in words,
// sample_pairs, element_url) until it has been clean for ClearWindows
// windows, SLOs or not. The condition names its own culprit (its element),
// so an SLO alert whose Blamer names the same element joins its incident,
// and the other way round. meshlens_fault_suspected{element,kind,symptom}
// is the estimate of each element blamed, 0 once it is not (the series
// is dropped an hour later), for rules of the users' own.
//
// # Incidents
//
// A firing alert joins an open incident when they share a cause: the same
// blamed element, or overlapping scopes (one element inside the other, by
// the fabric's naming: dc1 ⊃ dc1-pod2 ⊃ dc1-pod2-rack5 ⊃
// dc1-pod2-rack5-h07) while the incident was active within
// Config.GroupWindow. Otherwise it opens a new incident. An incident keeps
// a timeline (first symptom, detection, localization, mitigation,
// resolution), its blamed element and evidence from the Blamer, the SLOs it
// burned and how much budget they lost while it was open, and the affected
// pairs. It resolves when its last alert resolves.
//
// # Delivery
//
// Run sends, per incident (the group), to every Receiver: when something
// changed, and again every ResendInterval while alerts fire for receivers
// that want repeats (Alertmanager: endsAt rolls forward so an alert stays
// active only while meshlens keeps saying so; resolved alerts carry endsAt =
// the resolve time). A failed delivery is retried at the next round;
// webhooks also retry with back-off within a round. Pending alerts are not
// sent.
//
// This package imports slo (for SLO statuses and scopes) and clock; it never
// imports the aggregator or the localizer: the localizer's findings come in
// through the Blamer interface.
package alert
