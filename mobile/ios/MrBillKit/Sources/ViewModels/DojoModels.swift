import Foundation

/// The platform's WebRTC stack (WebRTC.framework on iOS). The core carries only the signals
/// (SDP, ICE candidates, hang-ups) between a dojo's peers; audio stays native.
public protocol CallEngine: AnyObject {
    /// Calls `peer`: create an offer and pass every signal for it to `send`.
    func call(peer: UInt64, send: @escaping (String) -> Void)
    /// A signal from `peer` (an offer to answer through `send`, an answer, a candidate).
    func receive(peer: UInt64, signalJson: String, send: @escaping (String) -> Void)
    func setMuted(_ muted: Bool)
    func hangUp(peer: UInt64)
}

/// The "new dojo" form.
public struct DojoForm: Equatable {
    public var name = ""
    public var description = ""
    public var language = ""
    public var initialCode = ""
    public var isPrivate = false

    func request() -> CreateDojo {
        CreateDojo(
            name: name.trimmingCharacters(in: .whitespaces), description: description.trimmingCharacters(in: .whitespaces),
            language: language.trimmingCharacters(in: .whitespaces), maxParticipants: nil, private: isPrivate,
            initialCode: initialCode, scheduledStart: nil
        )
    }
}

public struct DojosState: Equatable {
    public var items: [Dojo] = []
    public var loading = true
    public var form = DojoForm()
    public var joinCode = ""
    public var busy = false
    /// A dojo to open now (created or joined); the screen navigates, then calls `opened()`.
    public var open: Dojo?
    public var problem: Problem?
    public var fieldErrors: [String: String] { problem?.fieldErrors ?? [:] }
}

/// The dojos: the list, a new one, joining one by its host's code.
@MainActor
public final class DojosModel: ScreenModel, ObservableObject {
    @Published public private(set) var state = DojosState()

    override init(app: AppModel) {
        super.init(app: app)
        refresh()
    }

    public func refresh() {
        state.loading = true
        state.problem = nil
        act(failed) {
            let page = try await withRetry { try await self.app.core.dojos() }
            self.state.items = page.items
            self.state.loading = false
        }
    }

    public func editForm(_ change: (inout DojoForm) -> Void) { change(&state.form) }

    public func setJoinCode(_ text: String) {
        state.joinCode = text
        state.problem = nil
    }

    public func create() {
        let request = state.form.request()
        run { try await self.app.core.createDojo(dojo: request) }
    }

    public func join() {
        let code = state.joinCode.trimmingCharacters(in: .whitespaces)
        run { try await self.app.core.joinDojo(joinCode: code) }
    }

    public func opened() { state.open = nil }

    private func run(_ work: @escaping @MainActor () async throws -> Dojo) {
        guard !state.busy else { return }
        state.busy = true
        state.problem = nil
        act(failed) {
            let dojo = try await work()
            self.state.busy = false
            self.state.open = dojo
            self.state.form = DojoForm()
            self.state.joinCode = ""
            self.state.items = [dojo] + self.state.items.filter { $0.id != dojo.id }
        }
    }

    private func failed(_ problem: Problem) {
        state.loading = false
        state.busy = false
        state.problem = problem
    }
}

/// The voice call in a room.
public enum CallState: Equatable {
    case idle
    case ringing(from: UInt64)
    case inCall(peers: Set<UInt64>, muted: Bool)
}

public struct DojoRoomState: Equatable {
    public let dojo: Dojo
    public var code = ""
    public var live = LiveState.connecting
    public var peers: [Peer] = []
    /// The others' cursors in `code`, in UTF-16 units (`code.utf16`).
    public var cursors: [RemoteCursor] = []
    public var chat: [ChatMessage] = []
    public var draft = ""
    public var call = CallState.idle
    public var closedBecause: String?
    public var problem: Problem?
}

/// A dojo room: the editor bound to the shared text, the others' cursors, participants, chat,
/// and the voice call's signalling.
@MainActor
public final class DojoRoomModel: ScreenModel, ObservableObject {
    @Published public private(set) var state: DojoRoomState
    private let call: CallEngine?
    private var session: DojoSession?
    private var pendingOffer: (UInt64, String)?

    init(app: AppModel, dojo: Dojo, call: CallEngine?) {
        self.state = DojoRoomState(dojo: dojo)
        self.call = call
        super.init(app: app)
        act({ self.state.problem = $0 }) {
            let history = try await withRetry { try await self.app.core.chatHistory(dojo: dojo.id) }
            self.state.chat = Self.merge(history.items, self.state.chat)
        }
        act({ self.state.problem = $0 }) {
            let opened = try await self.app.core.openDojo(dojo: dojo.id, listener: Listener(self))
            self.session = opened
            self.state.code = opened.code()
            if case let .signedIn(_, me) = self.app.state {
                opened.setUser(name: me.displayName.isEmpty ? me.email : me.displayName, color: Self.color(of: me.id))
            }
        }
    }

    /// The editor's new text and selection (UTF-16 offsets) after the user typed.
    public func edit(text: String, selectionStart: Int, selectionEnd: Int) {
        guard let session else { return }
        if let change = Self.diff(state.code, text) {
            if change.deleted > 0 { session.delete(index: UInt32(change.at), len: UInt32(change.deleted)) }
            if !change.inserted.isEmpty { session.insert(index: UInt32(change.at), text: change.inserted) }
        }
        state.code = text
        session.setCursor(anchor: UInt32(max(0, selectionStart)), head: UInt32(max(0, selectionEnd)))
    }

    public func select(start: Int, end: Int) { session?.setCursor(anchor: UInt32(max(0, start)), head: UInt32(max(0, end))) }
    public func blur() { session?.clearCursor() }
    public func setDraft(_ text: String) { state.draft = text }

    public func sendChat() {
        let text = state.draft.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, let session else { return }
        session.sendChat(text: text)
        state.draft = ""
    }

    /// Calls everyone in the room.
    public func startCall() {
        guard let call else { return }
        let peers = Set(state.peers.map(\.peer))
        if peers.isEmpty { return }
        if case .inCall = state.call { return }
        state.call = .inCall(peers: peers, muted: false)
        for peer in peers { call.call(peer: peer, send: sender(peer)) }
    }

    public func acceptCall() {
        guard let (from, offer) = pendingOffer else { return }
        pendingOffer = nil
        state.call = .inCall(peers: [from], muted: false)
        call?.receive(peer: from, signalJson: offer, send: sender(from))
    }

    public func toggleMute() {
        guard case let .inCall(peers, muted) = state.call else { return }
        call?.setMuted(!muted)
        state.call = .inCall(peers: peers, muted: !muted)
    }

    /// Hangs up (or declines a ringing call).
    public func hangUp() {
        let peers: Set<UInt64>
        switch state.call {
        case let .inCall(inCall, _): peers = inCall
        case let .ringing(from): peers = [from]
        case .idle: return
        }
        pendingOffer = nil
        for peer in peers {
            try? session?.sendSignal(to: peer, signalJson: #"{"kind": "hangup"}"#)
            call?.hangUp(peer: peer)
        }
        state.call = .idle
    }

    /// Leaves the room (the screen goes).
    public override func close() {
        if state.call != .idle { hangUp() }
        session?.leave()
        super.close()
    }

    fileprivate func heard(_ event: Heard) {
        switch event {
        case let .code(code): state.code = code
        case let .chat(message): state.chat = Self.merge(state.chat, [message])
        case let .peers(peers):
            let here = Set(peers.map(\.peer))
            switch state.call {
            case let .inCall(inCall, muted):
                let left = inCall.intersection(here)
                state.call = left.isEmpty ? .idle : .inCall(peers: left, muted: muted)
            case let .ringing(from) where !here.contains(from): state.call = .idle
            default: break
            }
            state.peers = peers
        case let .cursors(cursors): state.cursors = cursors
        case let .signal(from, json): signal(from: from, json: json)
        case let .live(live):
            if case let .closed(code, _) = live {
                if code == 4001 { app.sessionEnded() }
                state.closedBecause = Self.why(Int(code))
            }
            state.live = live
        }
    }

    private func signal(from: UInt64, json: String) {
        let parsed = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let kind = parsed?["kind"] as? String
        switch (kind, state.call) {
        case ("hangup", let .inCall(peers, muted)) where peers.count > 1:
            call?.hangUp(peer: from)
            state.call = .inCall(peers: peers.subtracting([from]), muted: muted)
        case ("hangup", _):
            call?.hangUp(peer: from)
            state.call = .idle
        case ("offer", .idle):
            pendingOffer = (from, json)
            state.call = .ringing(from: from)
        case ("offer", let .inCall(peers, muted)):
            state.call = .inCall(peers: peers.union([from]), muted: muted)
            call?.receive(peer: from, signalJson: json, send: sender(from))
        default:
            call?.receive(peer: from, signalJson: json, send: sender(from))
        }
    }

    private func sender(_ peer: UInt64) -> (String) -> Void {
        { [weak self] json in
            Task { @MainActor in try? self?.session?.sendSignal(to: peer, signalJson: json) }
        }
    }

    /// One edit turning `before` into `after`, in UTF-16 offsets (the core's).
    public struct Change: Equatable {
        public let at: Int
        public let deleted: Int
        public let inserted: String
    }

    /// The single change between two texts (common prefix and suffix kept), never splitting a
    /// surrogate pair; nil when they are equal.
    public static func diff(_ before: String, _ after: String) -> Change? {
        if before == after { return nil }
        let a = Array(before.utf16), b = Array(after.utf16)
        let shortest = min(a.count, b.count)
        var prefix = 0
        while prefix < shortest && a[prefix] == b[prefix] { prefix += 1 }
        if prefix > 0 && UTF16.isLeadSurrogate(a[prefix - 1]) { prefix -= 1 }
        var suffix = 0
        while suffix < shortest - prefix && a[a.count - 1 - suffix] == b[b.count - 1 - suffix] { suffix += 1 }
        if suffix > 0 && UTF16.isTrailSurrogate(a[a.count - suffix]) { suffix -= 1 }
        let inserted = String(decoding: b[prefix..<(b.count - suffix)], as: UTF16.self)
        return Change(at: prefix, deleted: a.count - prefix - suffix, inserted: inserted)
    }

    /// Chat in order, each message once (history and live can overlap).
    static func merge(_ a: [ChatMessage], _ b: [ChatMessage]) -> [ChatMessage] {
        var bySeq: [Int64: ChatMessage] = [:]
        for m in a + b { bySeq[m.seq] = m }
        return bySeq.values.sorted { $0.seq < $1.seq }
    }

    private static let palette = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#3949ab"]

    /// A stable colour per user for their cursor (the same on both platforms: Java's String.hashCode).
    static func color(of id: String) -> String {
        var hash: Int32 = 0
        for unit in id.utf16 { hash = hash &* 31 &+ Int32(unit) }
        let i = ((Int(hash) % palette.count) + palette.count) % palette.count
        return palette[i]
    }

    static func why(_ code: Int) -> String? {
        switch code {
        case 1000: return nil
        case 4001: return "Your session ended. Sign in again."
        case 4003: return "You were removed from this dojo."
        case 4004: return "This dojo no longer exists."
        case 4005: return "This dojo is full."
        case 4006: return "This dojo has ended."
        default: return "The room closed (\(code))."
        }
    }
}

/// What a session said, carried to the main actor.
private enum Heard {
    case code(String)
    case chat(ChatMessage)
    case peers([Peer])
    case cursors([RemoteCursor])
    case signal(UInt64, String)
    case live(LiveState)
}

/// The core's listener (called on its threads): hops every event to the room's model.
private final class Listener: DojoListener, @unchecked Sendable {
    private weak var room: DojoRoomModel?
    init(_ room: DojoRoomModel) { self.room = room }

    private func tell(_ event: Heard) {
        Task { @MainActor [weak room] in room?.heard(event) }
    }

    func onCode(code: String) { tell(.code(code)) }
    func onChat(message: ChatMessage) { tell(.chat(message)) }
    func onPeers(peers: [Peer]) { tell(.peers(peers)) }
    func onCursors(cursors: [RemoteCursor]) { tell(.cursors(cursors)) }
    func onSignal(from: UInt64, signalJson: String) { tell(.signal(from, signalJson)) }
    func onState(state: LiveState) { tell(.live(state)) }
}
