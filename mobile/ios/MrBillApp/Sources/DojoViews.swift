import MrBillKit
import SwiftUI

/// The dojos: join by code, create one, the list.
struct DojosView: View {
    let app: AppModel
    @StateObject private var model: DojosModel
    @State private var room: Dojo?

    init(app: AppModel) {
        self.app = app
        _model = StateObject(wrappedValue: app.dojos())
    }

    var body: some View {
        let s = model.state
        let e = s.fieldErrors
        Form {
            Section("Join") {
                FieldRow(label: "Code from the host", text: bind(s.joinCode, model.setJoinCode), error: e["join_code"])
                Button("Join", action: model.join).disabled(s.busy || s.joinCode.isEmpty)
            }
            Section("New dojo") {
                FieldRow(label: "Name", text: bind(s.form.name, { v in model.editForm { $0.name = v } }), error: e["name"])
                FieldRow(label: "Language", text: bind(s.form.language, { v in model.editForm { $0.language = v } }), error: e["language"])
                FieldRow(label: "Description", text: bind(s.form.description, { v in model.editForm { $0.description = v } }), error: e["description"])
                FieldRow(label: "Starting code", text: bind(s.form.initialCode, { v in model.editForm { $0.initialCode = v } }), error: e["initial_code"])
                Toggle("Private (join by code only)", isOn: bind(s.form.isPrivate, { v in model.editForm { $0.isPrivate = v } }))
                Button("Create", action: model.create).disabled(s.busy)
                ProblemRow(problem: s.problem)
            }
            Section("Dojos") {
                ForEach(s.items, id: \.id) { dojo in
                    Button {
                        room = dojo
                    } label: {
                        VStack(alignment: .leading) {
                            Text(dojo.name)
                            Text("\(dojo.language) · \(dojo.online) online").font(.caption).foregroundStyle(.secondary)
                        }
                    }
                }
            }
        }
        .navigationTitle("Dojos")
        .refreshable { model.refresh() }
        .onChange(of: s.open) { open in
            if let open {
                model.opened()
                room = open
            }
        }
        .navigationDestination(item: $room) { dojo in
            DojoRoomView(app: app, dojo: dojo)
        }
    }
}

/// A dojo room: the shared code with the others' cursors, who is here, chat, the voice call.
struct DojoRoomView: View {
    let dojo: Dojo
    @StateObject private var model: DojoRoomModel

    init(app: AppModel, dojo: Dojo) {
        self.dojo = dojo
        _model = StateObject(wrappedValue: app.dojoRoom(dojo: dojo, call: WebRTCCallEngine()))
    }

    var body: some View {
        let s = model.state
        VStack(alignment: .leading, spacing: 8) {
            HStack {
                Text(live(s.live)).font(.caption)
                ForEach(s.cursors, id: \.client) { c in
                    Text(c.name).font(.caption).padding(4).background(Color(hex: c.color).opacity(0.25)).clipShape(Capsule())
                }
                if s.peers.count > s.cursors.count { Text("+\(s.peers.count - s.cursors.count) here").font(.caption) }
            }
            if let why = s.closedBecause { Text(why).foregroundStyle(.red) }
            CodeEditor(code: s.code, cursors: s.cursors, edit: model.edit, select: model.select, blur: model.blur)
            callBar(s.call)
            List(s.chat, id: \.seq) { m in Text(m.text) }.frame(height: 140)
            HStack {
                TextField("Message", text: bind(s.draft, model.setDraft)).textFieldStyle(.roundedBorder)
                Button("Send", action: model.sendChat)
            }
        }
        .padding()
        .navigationTitle(dojo.name)
        .onDisappear { model.close() }
        .alert("Incoming call", isPresented: bind(isRinging(s.call), { _ in })) {
            Button("Answer", action: model.acceptCall)
            Button("Decline", role: .cancel, action: model.hangUp)
        }
    }

    @ViewBuilder
    private func callBar(_ call: CallState) -> some View {
        HStack {
            switch call {
            case .idle:
                Button("Call", action: model.startCall)
            case .ringing:
                Text("Ringing…")
            case let .inCall(peers, muted):
                Text("In a call with \(peers.count)")
                Button(muted ? "Unmute" : "Mute", action: model.toggleMute)
                Button("Hang up", role: .destructive, action: model.hangUp)
            }
        }
    }

    private func isRinging(_ call: CallState) -> Bool {
        if case .ringing = call { return true }
        return false
    }

    private func live(_ state: LiveState) -> String {
        switch state {
        case .connecting: return "connecting…"
        case .live: return "live"
        case let .reconnecting(attempt): return "reconnecting (\(attempt))…"
        case .closed: return "closed"
        }
    }
}

/// The code in a UITextView (offsets in UTF-16, like the core's): every change and caret move
/// goes to the model; the others' carets are drawn where the layout puts their index.
struct CodeEditor: UIViewRepresentable {
    let code: String
    let cursors: [RemoteCursor]
    let edit: (String, Int, Int) -> Void
    let select: (Int, Int) -> Void
    let blur: () -> Void

    func makeUIView(context: Context) -> UITextView {
        let view = UITextView()
        view.font = .monospacedSystemFont(ofSize: 14, weight: .regular)
        view.autocorrectionType = .no
        view.autocapitalizationType = .none
        view.smartQuotesType = .no
        view.smartDashesType = .no
        view.delegate = context.coordinator
        return view
    }

    func updateUIView(_ view: UITextView, context: Context) {
        context.coordinator.parent = self
        if view.text != code {
            // A remote change: keep the caret where it was, within the new text.
            let selection = view.selectedRange
            view.text = code
            let length = (code as NSString).length
            view.selectedRange = NSRange(location: min(selection.location, length), length: 0)
        }
        view.subviews.filter { $0.tag == Self.caretTag }.forEach { $0.removeFromSuperview() }
        for cursor in cursors {
            guard let at = view.position(from: view.beginningOfDocument, offset: Int(cursor.head)) else { continue }
            let rect = view.caretRect(for: at)
            let caret = UIView(frame: CGRect(x: rect.minX, y: rect.minY, width: 2, height: rect.height))
            caret.backgroundColor = UIColor(Color(hex: cursor.color))
            caret.tag = Self.caretTag
            view.addSubview(caret)
        }
    }

    func makeCoordinator() -> Coordinator { Coordinator(self) }

    private static let caretTag = 0x6d62

    final class Coordinator: NSObject, UITextViewDelegate {
        var parent: CodeEditor
        init(_ parent: CodeEditor) { self.parent = parent }

        func textViewDidChange(_ view: UITextView) {
            let r = view.selectedRange
            parent.edit(view.text, r.location, r.location + r.length)
        }

        func textViewDidChangeSelection(_ view: UITextView) {
            let r = view.selectedRange
            parent.select(r.location, r.location + r.length)
        }

        func textViewDidEndEditing(_ view: UITextView) { parent.blur() }
    }
}

extension Color {
    /// A `#rrggbb` colour (grey when it is not one).
    init(hex: String) {
        let digits = hex.hasPrefix("#") ? String(hex.dropFirst()) : hex
        guard digits.count == 6, let value = UInt32(digits, radix: 16) else {
            self = .gray
            return
        }
        self = Color(
            red: Double((value >> 16) & 0xff) / 255,
            green: Double((value >> 8) & 0xff) / 255,
            blue: Double(value & 0xff) / 255
        )
    }
}
