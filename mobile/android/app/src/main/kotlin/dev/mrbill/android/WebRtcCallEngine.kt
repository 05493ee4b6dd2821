package dev.mrbill.android

import android.content.Context
import dev.mrbill.viewmodel.CallEngine
import org.json.JSONObject
import org.webrtc.DataChannel
import org.webrtc.IceCandidate
import org.webrtc.MediaConstraints
import org.webrtc.MediaStream
import org.webrtc.PeerConnection
import org.webrtc.PeerConnectionFactory
import org.webrtc.SdpObserver
import org.webrtc.SessionDescription
import java.util.concurrent.ConcurrentHashMap

/**
 * Voice calls in a dojo over the platform's WebRTC (audio only): one peer connection per
 * participant; the SDP and ICE candidates travel as the core's call signals. The JSON matches
 * the browser's (`RTCSessionDescriptionInit`, `RTCIceCandidateInit`), so web participants
 * interoperate.
 */
class WebRtcCallEngine(
    context: Context,
    private val iceServers: List<String> = listOf("stun:stun.l.google.com:19302"),
) : CallEngine {
    private val factory: PeerConnectionFactory
    private val microphone: org.webrtc.AudioTrack
    private val connections = ConcurrentHashMap<ULong, PeerConnection>()

    init {
        PeerConnectionFactory.initialize(PeerConnectionFactory.InitializationOptions.builder(context).createInitializationOptions())
        factory = PeerConnectionFactory.builder().createPeerConnectionFactory()
        microphone = factory.createAudioTrack("microphone", factory.createAudioSource(MediaConstraints()))
    }

    override fun call(peer: ULong, send: (String) -> Unit) {
        val connection = connection(peer, send)
        connection.createOffer(created { offer ->
            connection.setLocalDescription(Done, offer)
            send(description("offer", offer))
        }, MediaConstraints())
    }

    override fun receive(peer: ULong, signalJson: String, send: (String) -> Unit) {
        val signal = JSONObject(signalJson)
        val connection = connection(peer, send)
        when (signal.optString("kind")) {
            "offer" -> {
                val offer = SessionDescription(SessionDescription.Type.OFFER, signal.getString("sdp"))
                connection.setRemoteDescription(Done, offer)
                connection.createAnswer(created { answer ->
                    connection.setLocalDescription(Done, answer)
                    send(description("answer", answer))
                }, MediaConstraints())
            }
            "answer" -> connection.setRemoteDescription(Done, SessionDescription(SessionDescription.Type.ANSWER, signal.getString("sdp")))
            "ice_candidate" -> {
                val c = signal.getJSONObject("candidate")
                connection.addIceCandidate(IceCandidate(c.optString("sdpMid"), c.optInt("sdpMLineIndex"), c.getString("candidate")))
            }
        }
    }

    override fun setMuted(muted: Boolean) {
        microphone.setEnabled(!muted)
    }

    override fun hangUp(peer: ULong) {
        connections.remove(peer)?.dispose()
    }

    private fun connection(peer: ULong, send: (String) -> Unit): PeerConnection = connections.getOrPut(peer) {
        val config = PeerConnection.RTCConfiguration(iceServers.map { PeerConnection.IceServer.builder(it).createIceServer() })
        config.sdpSemantics = PeerConnection.SdpSemantics.UNIFIED_PLAN
        val connection = factory.createPeerConnection(config, Candidates(send)) ?: error("WebRTC refused a peer connection")
        connection.addTrack(microphone, listOf("dojo"))
        connection
    }

    private fun description(kind: String, sdp: SessionDescription) = JSONObject().put("kind", kind).put("sdp", sdp.description).toString()

    /** Our ICE candidates, as the browser's `RTCIceCandidateInit`, to the peer. */
    private class Candidates(private val send: (String) -> Unit) : PeerConnection.Observer {
        override fun onIceCandidate(candidate: IceCandidate) {
            val init = JSONObject()
                .put("candidate", candidate.sdp)
                .put("sdpMid", candidate.sdpMid)
                .put("sdpMLineIndex", candidate.sdpMLineIndex)
            send(JSONObject().put("kind", "ice_candidate").put("candidate", init).toString())
        }

        override fun onSignalingChange(state: PeerConnection.SignalingState) {}
        override fun onIceConnectionChange(state: PeerConnection.IceConnectionState) {}
        override fun onIceConnectionReceivingChange(receiving: Boolean) {}
        override fun onIceGatheringChange(state: PeerConnection.IceGatheringState) {}
        override fun onIceCandidatesRemoved(candidates: Array<out IceCandidate>) {}
        override fun onAddStream(stream: MediaStream) {}
        override fun onRemoveStream(stream: MediaStream) {}
        override fun onDataChannel(channel: DataChannel) {}
        override fun onRenegotiationNeeded() {}
    }

    private fun created(then: (SessionDescription) -> Unit) = object : SdpObserver by Done {
        override fun onCreateSuccess(description: SessionDescription) = then(description)
    }

    /** An SDP step whose outcome needs no action (failures end in no audio, seen by the user). */
    private object Done : SdpObserver {
        override fun onCreateSuccess(description: SessionDescription) {}
        override fun onSetSuccess() {}
        override fun onCreateFailure(error: String) {}
        override fun onSetFailure(error: String) {}
    }
}
