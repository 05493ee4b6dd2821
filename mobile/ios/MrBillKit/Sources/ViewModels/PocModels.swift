import Foundation

/// A filter chip: a facet value, its count over all matches, and whether it is on.
public struct Chip: Equatable, Identifiable {
    public let value: String
    public let count: UInt64
    public let selected: Bool
    public var id: String { value }
}

public struct PocListState: Equatable {
    public var text = ""
    public var language: String?
    public var tags: Set<String> = []
    public var mine = false
    public var items: [Poc] = []
    public var total: UInt64 = 0
    public var languages: [Chip] = []
    public var tagChips: [Chip] = []
    public var loading = false
    public var loadingMore = false
    public var problem: Problem?
    public var endReached: Bool { UInt64(items.count) >= total }
}

/// The PoC list: search as you type (after a short pause), chips with counts, "mine", and
/// infinite scroll (`loadMore()` when the end comes into view).
@MainActor
public final class PocListModel: ScreenModel, ObservableObject {
    public static let perPage: UInt32 = 30
    @Published public private(set) var state = PocListState()
    private var search: Task<Void, Never>?
    private var page: UInt32 = 0

    override init(app: AppModel) {
        super.init(app: app)
        refresh()
    }

    public func setText(_ text: String) {
        state.text = text
        refresh(afterMs: 250)
    }

    public func toggleLanguage(_ language: String) {
        state.language = state.language == language ? nil : language
        refresh()
    }

    public func toggleTag(_ tag: String) {
        if state.tags.contains(tag) { state.tags.remove(tag) } else { state.tags.insert(tag) }
        refresh()
    }

    public func toggleMine() {
        state.mine.toggle()
        refresh()
    }

    /// Starts over with the current query; a search still on its way is dropped.
    public func refresh(afterMs: UInt64 = 0) {
        search?.cancel()
        state.loading = true
        state.loadingMore = false
        state.problem = nil
        search = act(failed) {
            if afterMs > 0 { try await Task.sleep(nanoseconds: afterMs * 1_000_000) }
            let found = try await withRetry { try await self.app.core.searchPocs(query: self.query(page: 1)) }
            try Task.checkCancellation()
            self.page = 1
            self.state.items = found.items
            self.state.total = found.total
            self.state.languages = Self.chips(found.facets.language, selected: Set([self.state.language].compactMap { $0 }))
            self.state.tagChips = Self.chips(found.facets.tags, selected: self.state.tags)
            self.state.loading = false
        }
    }

    /// The next page, when the end of the list is in view.
    public func loadMore() {
        guard !state.loading, !state.loadingMore, !state.endReached else { return }
        state.loadingMore = true
        search = act(failed) {
            let found = try await withRetry { try await self.app.core.searchPocs(query: self.query(page: self.page + 1)) }
            self.page += 1
            let known = Set(self.state.items.map(\.id))
            // A PoC created meanwhile shifts pages: never show one twice.
            self.state.items += found.items.filter { !known.contains($0.id) }
            self.state.total = found.total
            self.state.loadingMore = false
        }
    }

    /// A PoC saved on its own screen: shown here without a reload.
    public func saved(_ poc: Poc) {
        if let i = state.items.firstIndex(where: { $0.id == poc.id }) {
            state.items[i] = poc
        } else {
            state.items.insert(poc, at: 0)
            state.total += 1
        }
    }

    public func deleted(_ id: String) {
        guard state.items.contains(where: { $0.id == id }) else { return }
        state.items.removeAll { $0.id == id }
        state.total -= 1
    }

    private func query(page: UInt32) -> PocQuery {
        let text = state.text.trimmingCharacters(in: .whitespaces)
        return PocQuery(text: text.isEmpty ? nil : text, language: state.language, tags: state.tags.sorted(), mine: state.mine, page: page, perPage: Self.perPage)
    }

    private func failed(_ problem: Problem) {
        state.loading = false
        state.loadingMore = false
        state.problem = problem
    }

    /// The facet's chips, selected ones first and always shown (even at a count of 0).
    static func chips(_ facets: [FacetCount], selected: Set<String>) -> [Chip] {
        let counted = facets.map { Chip(value: $0.value, count: $0.count, selected: selected.contains($0.value)) }
        let missing = selected.filter { v in !counted.contains { $0.value == v } }.sorted().map { Chip(value: $0, count: 0, selected: true) }
        return (counted + missing).filter(\.selected) + (counted + missing).filter { !$0.selected }
    }
}

/// A PoC as its form holds it: lists as comma-separated text.
public struct PocForm: Equatable {
    public var name = ""
    public var description = ""
    public var repositoryUrl = ""
    public var language = ""
    public var tags = ""
    public var frameworks = ""
    public var visibility = Visibility.tenant

    public init() {}

    init(_ poc: Poc) {
        name = poc.name
        description = poc.description
        repositoryUrl = poc.repositoryUrl
        language = poc.language
        tags = poc.tags.joined(separator: ", ")
        frameworks = poc.frameworks.joined(separator: ", ")
        visibility = poc.visibility
    }

    func input() -> PocInput {
        PocInput(name: trim(name), description: trim(description), repositoryUrl: trim(repositoryUrl), language: trim(language), tags: list(tags), frameworks: list(frameworks), visibility: visibility)
    }

    /// Only what differs from `poc`: an edit never overwrites a field the user left alone.
    func patch(_ poc: Poc) -> PocPatch {
        let i = input()
        return PocPatch(
            name: i.name == poc.name ? nil : i.name,
            description: i.description == poc.description ? nil : i.description,
            repositoryUrl: i.repositoryUrl == poc.repositoryUrl ? nil : i.repositoryUrl,
            language: i.language == poc.language ? nil : i.language,
            tags: i.tags == poc.tags ? nil : i.tags,
            frameworks: i.frameworks == poc.frameworks ? nil : i.frameworks,
            visibility: i.visibility == poc.visibility ? nil : i.visibility
        )
    }

    /// The value of the form field the API names `field`.
    func value(of field: String) -> String {
        switch field {
        case "name": return name
        case "description": return description
        case "repository_url": return repositoryUrl
        case "language": return language
        case "tags": return tags
        case "frameworks": return frameworks
        case "visibility": return "\(visibility)"
        default: return ""
        }
    }

    private func trim(_ s: String) -> String { s.trimmingCharacters(in: .whitespacesAndNewlines) }
    private func list(_ s: String) -> [String] { s.split(separator: ",").map { trim(String($0)) }.filter { !$0.isEmpty } }
}

public struct PocEditorState: Equatable {
    public var poc: Poc?
    public var form = PocForm()
    public var loading = false
    public var saving = false
    public var deleted = false
    public var saved = false
    public var problem: Problem?
    public var fieldErrors: [String: String] { problem?.fieldErrors ?? [:] }
    public var isNew: Bool { poc == nil }
}

/// A PoC's detail, edit and create screen: refused fields come back inline, on the field.
@MainActor
public final class PocEditorModel: ScreenModel, ObservableObject {
    @Published public private(set) var state = PocEditorState()

    init(app: AppModel, id: String?) {
        super.init(app: app)
        guard let id else { return }
        state.loading = true
        act(failed) {
            let poc = try await withRetry { try await self.app.core.poc(id: id) }
            self.state.poc = poc
            self.state.form = PocForm(poc)
            self.state.loading = false
        }
    }

    /// Changes the form; the message on a field goes once the user edits it.
    public func edit(_ change: (inout PocForm) -> Void) {
        let before = state.form
        change(&state.form)
        if case let .invalid(fields) = state.problem {
            let left = fields.filter { before.value(of: $0.key) == state.form.value(of: $0.key) }
            state.problem = left.isEmpty ? nil : .invalid(fields: left)
        }
    }

    public func save() {
        guard !state.saving, !state.loading else { return }
        let saved = state.poc
        let form = state.form
        state.saving = true
        state.problem = nil
        act(failed) {
            let poc: Poc
            if let saved {
                poc = try await self.app.core.updatePoc(id: saved.id, patch: form.patch(saved))
            } else {
                poc = try await self.app.core.createPoc(input: form.input())
            }
            self.state.poc = poc
            self.state.form = PocForm(poc)
            self.state.saving = false
            self.state.saved = true
        }
    }

    public func delete() {
        guard let poc = state.poc else { return }
        state.saving = true
        state.problem = nil
        act(failed) {
            try await self.app.core.deletePoc(id: poc.id)
            self.state.saving = false
            self.state.deleted = true
        }
    }

    private func failed(_ problem: Problem) {
        state.loading = false
        state.saving = false
        state.problem = problem
    }
}
