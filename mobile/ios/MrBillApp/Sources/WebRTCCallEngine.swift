import AVFoundation
import Foundation
import MrBillKit
import WebRTC

/// Voice calls in a dojo over WebRTC.framework (audio only): one peer connection per
/// participant; SDP and ICE candidates travel as the core's call signals, in the browser's
/// JSON shapes (`RTCSessionDescriptionInit`, `RTCIceCandidateInit`), so web participants
/// interoperate.
final class WebRTCCallEngine: NSObject, CallEngine {
    private static let factory: RTCPeerConnectionFactory = {
        RTCInitializeSSL()
        return RTCPeerConnectionFactory()
    }()

    private let iceServers: [String]
    private let microphone: RTCAudioTrack
    private var connections: [UInt64: (RTCPeerConnection, Candidates)] = [:]

    init(iceServers: [String] = ["stun:stun.l.google.com:19302"]) {
        self.iceServers = iceServers
        let source = Self.factory.audioSource(with: RTCMediaConstraints(mandatoryConstraints: nil, optionalConstraints: nil))
        microphone = Self.factory.audioTrack(with: source, trackId: "microphone")
        super.init()
    }

    func call(peer: UInt64, send: @escaping (String) -> Void) {
        let connection = self.connection(peer, send)
        connection.offer(for: constraints()) { offer, _ in
            guard let offer else { return }
            connection.setLocalDescription(offer) { _ in }
            send(Self.json(["kind": "offer", "sdp": offer.sdp]))
        }
    }

    func receive(peer: UInt64, signalJson: String, send: @escaping (String) -> Void) {
        guard let signal = (try? JSONSerialization.jsonObject(with: Data(signalJson.utf8))) as? [String: Any] else { return }
        let connection = self.connection(peer, send)
        switch signal["kind"] as? String {
        case "offer":
            guard let sdp = signal["sdp"] as? String else { return }
            connection.setRemoteDescription(RTCSessionDescription(type: .offer, sdp: sdp)) { _ in
                connection.answer(for: self.constraints()) { answer, _ in
                    guard let answer else { return }
                    connection.setLocalDescription(answer) { _ in }
                    send(Self.json(["kind": "answer", "sdp": answer.sdp]))
                }
            }
        case "answer":
            guard let sdp = signal["sdp"] as? String else { return }
            connection.setRemoteDescription(RTCSessionDescription(type: .answer, sdp: sdp)) { _ in }
        case "ice_candidate":
            guard let c = signal["candidate"] as? [String: Any], let sdp = c["candidate"] as? String else { return }
            let candidate = RTCIceCandidate(sdp: sdp, sdpMLineIndex: Int32(c["sdpMLineIndex"] as? Int ?? 0), sdpMid: c["sdpMid"] as? String)
            connection.add(candidate) { _ in }
        default:
            break
        }
    }

    func setMuted(_ muted: Bool) {
        microphone.isEnabled = !muted
    }

    func hangUp(peer: UInt64) {
        connections.removeValue(forKey: peer)?.0.close()
    }

    private func connection(_ peer: UInt64, _ send: @escaping (String) -> Void) -> RTCPeerConnection {
        if let (known, _) = connections[peer] { return known }
        let config = RTCConfiguration()
        config.iceServers = [RTCIceServer(urlStrings: iceServers)]
        config.sdpSemantics = .unifiedPlan
        let candidates = Candidates(send)
        guard let connection = Self.factory.peerConnection(with: config, constraints: constraints(), delegate: candidates) else {
            fatalError("WebRTC refused a peer connection")
        }
        connection.add(microphone, streamIds: ["dojo"])
        connections[peer] = (connection, candidates)
        return connection
    }

    private func constraints() -> RTCMediaConstraints {
        RTCMediaConstraints(mandatoryConstraints: ["OfferToReceiveAudio": "true"], optionalConstraints: nil)
    }

    static func json(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Our ICE candidates, as the browser's `RTCIceCandidateInit`, to the peer.
    final class Candidates: NSObject, RTCPeerConnectionDelegate {
        private let send: (String) -> Void
        init(_ send: @escaping (String) -> Void) { self.send = send }

        func peerConnection(_ peerConnection: RTCPeerConnection, didGenerate candidate: RTCIceCandidate) {
            let initial: [String: Any] = ["candidate": candidate.sdp, "sdpMid": candidate.sdpMid ?? "", "sdpMLineIndex": candidate.sdpMLineIndex]
            send(WebRTCCallEngine.json(["kind": "ice_candidate", "candidate": initial]))
        }

        func peerConnection(_ peerConnection: RTCPeerConnection, didChange stateChanged: RTCSignalingState) {}
        func peerConnection(_ peerConnection: RTCPeerConnection, didAdd stream: RTCMediaStream) {}
        func peerConnection(_ peerConnection: RTCPeerConnection, didRemove stream: RTCMediaStream) {}
        func peerConnectionShouldNegotiate(_ peerConnection: RTCPeerConnection) {}
        func peerConnection(_ peerConnection: RTCPeerConnection, didChange newState: RTCIceConnectionState) {}
        func peerConnection(_ peerConnection: RTCPeerConnection, didChange newState: RTCIceGatheringState) {}
        func peerConnection(_ peerConnection: RTCPeerConnection, didRemove candidates: [RTCIceCandidate]) {}
        func peerConnection(_ peerConnection: RTCPeerConnection, didOpen dataChannel: RTCDataChannel) {}
    }
}
