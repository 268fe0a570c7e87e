package caddyotp

import (
	"encoding/hex"
	"strconv"
)

// The names of everything the gate keeps in its Store, in one place. A phone or an address
// appears only as a subject key (a keyed hash, subjects.key), a flow by its random id, a code by
// a prefix of its hash: the store holds no phone number, address or code in its key names.

// flowKey holds a pending flow (JSON), from the code's first send until flowKeep after its last
// change.
func flowKey(flowID string) string { return "flow:" + flowID }

// attemptsKey counts the checks of one code of a flow.
func attemptsKey(flowID string, codeHash []byte) string {
	return "att:" + flowID + ":" + hex.EncodeToString(codeHash[:8])
}

// deliveryKey holds a code's delivery state: per code, so that a late answer about an old code
// cannot overwrite the state of the one that replaced it. Beside it, deliveryKey+":end" marks
// that its ending was recorded (endOnce), and deliveryKey+":cool" that its failure ended the
// phone's cooldown (endCooldownOnce).
func deliveryKey(flowID string, codeHash []byte) string {
	return "dlv:" + flowID + ":" + hex.EncodeToString(codeHash[:8])
}

// limitKey counts the events of one kind of one subject in one fixed window.
func limitKey(kind, subject string, slot int64) string {
	return "lim:" + kind + ":" + subject + ":" + strconv.FormatInt(slot, 10)
}

// cooldownKey holds when the last code went to a phone; cooldownClaimKey, named after that
// time, lets one of several parallel requests start the next.
func cooldownKey(phone string) string { return "cool:" + phone }

func cooldownClaimKey(phone, last string) string { return "cool:" + phone + ":" + last }

// failKey counts the consecutive failures of a phone, or of a phone and an address (lockKeys);
// lockKey holds until when it is locked.
func failKey(lock string) string { return "fail:" + lock }

func lockKey(lock string) string { return "lock:" + lock }

// voiceKey holds a voice call's sealed script, under a hash of its token (voiceScripts.key).
func voiceKey(tokenHash []byte) string { return "voice:" + hex.EncodeToString(tokenHash) }

// keyFingerprintKey holds the fingerprint of the key of the gate's instances (keyCheck).
func keyFingerprintKey(gate string) string { return "keyfp:" + gate }

// endingsCountKey counts a gate's endings so far.
func endingsCountKey(gate string) string { return "end:" + gate + ":n" }

// endingKey is one of a gate's last endings.
func endingKey(gate string, i int64) string { return "end:" + gate + ":" + strconv.FormatInt(i, 10) }

// pumpSlotKey is one slot of the pumping shield's window of a prefix or a country: a hash of
// the numbers counted in it, by keyed hash, and of who added them, by the keyed hash of their
// address range. pumpHoldKey holds until when a prefix is quarantined; pumpSeenKey, in monitor
// mode, until when it would be, which nothing obeys. tag names the gate and the prefix or the
// country by a keyed hash (pumpingShield).
func pumpSlotKey(tag string, slot int64) string {
	return "pump:{" + tag + "}:w:" + strconv.FormatInt(slot, 10)
}

func pumpHoldKey(tag string) string { return "pump:{" + tag + "}:hold" }

func pumpSeenKey(tag string) string { return "pump:{" + tag + "}:seen" }

// pumpListCountKey counts the quarantines of one gate listed so far; pumpListKey is one of
// them, with its prefix, for the admin API. gate is the shield's gate tag (pumpingShield).
func pumpListCountKey(gate string) string { return "pumpq:" + gate + ":n" }

func pumpListKey(gate string, i int64) string {
	return "pumpq:" + gate + ":" + strconv.FormatInt(i, 10)
}
