package dev.mrbill.viewmodel

/**
 * The platform's WebRTC stack (Android: `org.webrtc`; iOS: WebRTC.framework). The core only
 * carries the signals (SDP offers/answers, ICE candidates, hang-ups) between the peers of a
 * dojo; audio, codecs and the network path stay native.
 *
 * Signals are JSON: `{"kind": "offer", "sdp": …}`, `{"kind": "answer", "sdp": …}`,
 * `{"kind": "ice_candidate", "candidate": {…}}`, `{"kind": "hangup"}`.
 */
interface CallEngine {
    /** Calls [peer]: create an offer and pass every signal for it to [send]. */
    fun call(peer: ULong, send: (signalJson: String) -> Unit)

    /** A signal from [peer] (an offer to answer through [send], an answer, a candidate). */
    fun receive(peer: ULong, signalJson: String, send: (signalJson: String) -> Unit)

    fun setMuted(muted: Boolean)

    /** Ends the call with [peer] (the model sends the hang-up signal itself). */
    fun hangUp(peer: ULong)
}
