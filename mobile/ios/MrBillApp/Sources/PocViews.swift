import MrBillKit
import SwiftUI

/// The PoC list: search as you type, chips with counts, infinite scroll.
struct PocListView: View {
    let app: AppModel
    @StateObject private var model: PocListModel

    init(app: AppModel) {
        self.app = app
        _model = StateObject(wrappedValue: app.pocList())
    }

    var body: some View {
        let s = model.state
        List {
            Section {
                ChipRow(chips: s.languages, prefix: "", toggle: model.toggleLanguage)
                ChipRow(chips: s.tagChips, prefix: "#", toggle: model.toggleTag)
                Toggle("Mine only (\(s.total) PoCs)", isOn: bind(s.mine, { _ in model.toggleMine() }))
                ProblemRow(problem: s.problem)
            }
            ForEach(s.items, id: \.id) { poc in
                NavigationLink(value: poc.id) {
                    VStack(alignment: .leading) {
                        Text(poc.name)
                        Text("\(poc.language) · \(poc.tags.map { "#\($0)" }.joined(separator: " "))")
                            .font(.caption).foregroundStyle(.secondary)
                    }
                }
                // Near the end of what is loaded: ask for the next page.
                .onAppear { if poc.id == s.items.dropLast(4).last?.id || poc.id == s.items.last?.id { model.loadMore() } }
            }
            if s.loadingMore || (s.loading && s.items.isEmpty) {
                ProgressView().frame(maxWidth: .infinity)
            }
        }
        .searchable(text: bind(s.text, model.setText), prompt: "Search PoCs")
        .refreshable { model.refresh() }
        .navigationTitle("PoCs")
        .navigationDestination(for: String.self) { id in
            PocEditorView(app: app, id: id == "new" ? nil : id) { poc in
                if let poc { model.saved(poc) } else { model.deleted(id) }
            }
        }
        .toolbar {
            NavigationLink(value: "new") { Image(systemName: "plus") }
        }
    }
}

struct ChipRow: View {
    let chips: [Chip]
    let prefix: String
    let toggle: (String) -> Void

    var body: some View {
        ScrollView(.horizontal, showsIndicators: false) {
            HStack {
                ForEach(chips) { chip in
                    Button("\(prefix)\(chip.value) \(chip.count)") { toggle(chip.value) }
                        .buttonStyle(.bordered)
                        .tint(chip.selected ? .accentColor : .secondary)
                }
            }
        }
    }
}

/// A PoC's detail and edit form (or a new one): refused fields say why, inline.
struct PocEditorView: View {
    @StateObject private var model: PocEditorModel
    @Environment(\.dismiss) private var dismiss
    /// Told the saved PoC (or nil when deleted), for the list.
    let changed: (Poc?) -> Void

    init(app: AppModel, id: String?, changed: @escaping (Poc?) -> Void) {
        _model = StateObject(wrappedValue: app.pocEditor(id: id))
        self.changed = changed
    }

    var body: some View {
        let s = model.state
        let e = s.fieldErrors
        Form {
            if s.loading {
                ProgressView()
            } else {
                FieldRow(label: "Name", text: bind(s.form.name, { v in model.edit { $0.name = v } }), error: e["name"])
                FieldRow(label: "Repository URL", text: bind(s.form.repositoryUrl, { v in model.edit { $0.repositoryUrl = v } }), error: e["repository_url"])
                FieldRow(label: "Language", text: bind(s.form.language, { v in model.edit { $0.language = v } }), error: e["language"])
                FieldRow(label: "Tags (comma-separated)", text: bind(s.form.tags, { v in model.edit { $0.tags = v } }), error: e["tags"])
                FieldRow(label: "Frameworks (comma-separated)", text: bind(s.form.frameworks, { v in model.edit { $0.frameworks = v } }), error: e["frameworks"])
                FieldRow(label: "Description", text: bind(s.form.description, { v in model.edit { $0.description = v } }), error: e["description"])
                Picker("Visibility", selection: bind(s.form.visibility, { v in model.edit { $0.visibility = v } })) {
                    Text("tenant").tag(Visibility.tenant)
                    Text("private").tag(Visibility.private)
                }
                .pickerStyle(.segmented)
                ProblemRow(problem: s.problem)
                Button(s.saving ? "Saving…" : "Save", action: model.save).disabled(s.saving)
                if !s.isNew {
                    Button("Delete", role: .destructive, action: model.delete).disabled(s.saving)
                }
            }
        }
        .navigationTitle(s.isNew ? "New PoC" : s.form.name)
        .onChange(of: s.saved) { saved in if saved { changed(model.state.poc) } }
        .onChange(of: s.deleted) { deleted in
            if deleted {
                changed(nil)
                dismiss()
            }
        }
    }
}
