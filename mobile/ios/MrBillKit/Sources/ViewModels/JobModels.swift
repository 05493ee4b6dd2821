import Foundation

/// One bar of a chart: its label, its value, and its length relative to the longest (0–1).
public struct Bar: Equatable, Identifiable {
    public let label: String
    public let value: UInt64
    public let fraction: Double
    public var id: String { label }

    static func bars(_ counts: [KeyCount]) -> [Bar] {
        let top = max(1, counts.map(\.count).max() ?? 1)
        return counts.map { Bar(label: $0.key, value: $0.count, fraction: Double($0.count) / Double(top)) }
    }
}

public struct DashboardState: Equatable {
    public var dashboard: Dashboard?
    public var months: [Bar] = []
    public var languages: [Bar] = []
    public var tags: [Bar] = []
    public var loading = true
    public var problem: Problem?
}

/// The dashboard: totals and the charts' bars.
@MainActor
public final class DashboardModel: ScreenModel, ObservableObject {
    @Published public private(set) var state = DashboardState()

    override init(app: AppModel) {
        super.init(app: app)
        refresh()
    }

    public func refresh() {
        state.loading = true
        state.problem = nil
        act({ self.state.loading = false; self.state.problem = $0 }) {
            let d = try await withRetry { try await self.app.core.dashboard() }
            self.state = DashboardState(
                dashboard: d, months: Bar.bars(d.byMonth), languages: Bar.bars(Array(d.byLanguage.prefix(8))),
                tags: Bar.bars(Array(d.byTag.prefix(8))), loading: false, problem: nil
            )
        }
    }
}

/// A report or video job as its screen shows it.
public struct JobView: Equatable {
    public let id: String
    public let state: JobState
    /// 0–100.
    public let progress: Int
    public var failure: String?
    public var running: Bool { state == .pending || state == .processing }

    /// Progress on the way: an end state waits for the finished record (with its links).
    static func moving(_ id: String, _ state: JobState, _ progress: UInt8) -> JobView {
        JobView(id: id, state: state == .pending ? .pending : .processing, progress: Int(progress))
    }

    static func of(_ id: String, _ status: JobStatus) -> JobView {
        JobView(id: id, state: status.state, progress: Int(status.progress), failure: status.error?.message)
    }
}

/// Progress from the core's watcher to a screen, on the main actor.
final class Progress: JobListener {
    private let moved: @Sendable (JobState, UInt8) -> Void
    init(_ moved: @escaping @Sendable (JobState, UInt8) -> Void) { self.moved = moved }
    func onProgress(state: JobState, progress: UInt8) { moved(state, progress) }
}

public struct ReportState: Equatable {
    public var format = ReportFormat.pdf
    public var groupBy = GroupBy.language
    public var tags = ""
    public var job: JobView?
    /// The finished report's absolute, signed, expiring link (Quick Look / share).
    public var downloadUrl: URL?
    public var contentType: String?
    public var problem: Problem?
}

/// Reports: pick format and grouping, start, watch the progress, open the PDF/CSV.
@MainActor
public final class ReportModel: ScreenModel, ObservableObject {
    @Published public private(set) var state = ReportState()

    public func setFormat(_ format: ReportFormat) { state.format = format }
    public func setGroupBy(_ groupBy: GroupBy) { state.groupBy = groupBy }
    public func setTags(_ text: String) { state.tags = text }

    public func start() {
        guard state.job?.running != true else { return }
        let s = state
        state.job = nil
        state.downloadUrl = nil
        state.problem = nil
        act({ self.state.problem = $0 }) {
            let tags = s.tags.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let started = try await self.app.core.startReport(request: CreateReport(format: s.format, from: nil, to: nil, tags: tags, excludeTags: [], groupBy: s.groupBy))
            self.state.job = .of(started.id, started.status)
            let done = try await self.app.core.watchReport(id: started.id, listener: Progress { state, progress in
                // Hops may arrive after the end: never move a finished job back.
                Task { @MainActor in if self.state.job?.running == true { self.state.job = .moving(started.id, state, progress) } }
            })
            self.finished(done)
        }
    }

    public func cancel() {
        guard let job = state.job, job.running else { return }
        act({ self.state.problem = $0 }) { self.finished(try await self.app.core.cancelReport(id: job.id)) }
    }

    private func finished(_ report: Report) {
        state.job = .of(report.id, report.status)
        state.downloadUrl = report.download.flatMap { URL(string: $0.url) }
        state.contentType = report.download?.contentType
    }
}

public struct VideoState: Equatable {
    public var year = Int32(Calendar.current.component(.year, from: Date()))
    public var title = ""
    public var job: JobView?
    public var playUrl: URL?
    public var thumbnailUrl: URL?
    public var durationSecs: UInt32?
    public var problem: Problem?
    public var fieldErrors: [String: String] { problem?.fieldErrors ?? [:] }
    /// What the share sheet sends.
    public var shareText: String? { playUrl.map { "Our \(year) in PoCs: \($0.absoluteString)" } }
}

/// The yearly video: start, watch the render's progress, play and share.
@MainActor
public final class VideoModel: ScreenModel, ObservableObject {
    @Published public private(set) var state = VideoState()

    public func setYear(_ year: Int32) { state.year = year }
    public func setTitle(_ text: String) { state.title = text }

    public func start() {
        guard state.job?.running != true else { return }
        let s = state
        state.job = nil
        state.playUrl = nil
        state.thumbnailUrl = nil
        state.problem = nil
        act({ self.state.problem = $0 }) {
            let title = s.title.trimmingCharacters(in: .whitespaces)
            let started = try await self.app.core.startVideo(request: CreateVideo(year: s.year, title: title.isEmpty ? nil : title, tags: [], excludeTags: []))
            self.state.job = .of(started.id, started.status)
            let done = try await self.app.core.watchVideo(id: started.id, listener: Progress { state, progress in
                // Hops may arrive after the end: never move a finished job back.
                Task { @MainActor in if self.state.job?.running == true { self.state.job = .moving(started.id, state, progress) } }
            })
            self.finished(done)
        }
    }

    public func cancel() {
        guard let job = state.job, job.running else { return }
        act({ self.state.problem = $0 }) { self.finished(try await self.app.core.cancelVideo(id: job.id)) }
    }

    private func finished(_ video: Video) {
        state.job = .of(video.id, video.status)
        state.playUrl = video.download.flatMap { URL(string: $0.url) }
        state.thumbnailUrl = video.thumbnail.flatMap { URL(string: $0.url) }
        state.durationSecs = video.durationSecs
    }
}
