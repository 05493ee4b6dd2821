import AVKit
import MrBillKit
import SwiftUI

/// Reports (PDF/CSV/JSON: start, progress, open) and the yearly video (start, progress, play, share).
struct MediaView: View {
    @StateObject private var reports: ReportModel
    @StateObject private var video: VideoModel

    init(app: AppModel) {
        _reports = StateObject(wrappedValue: app.reports())
        _video = StateObject(wrappedValue: app.video())
    }

    var body: some View {
        let r = reports.state
        let v = video.state
        Form {
            Section("Report") {
                Picker("Format", selection: bind(r.format, reports.setFormat)) {
                    Text("PDF").tag(ReportFormat.pdf)
                    Text("CSV").tag(ReportFormat.csv)
                    Text("JSON").tag(ReportFormat.json)
                }
                Picker("Group by", selection: bind(r.groupBy, reports.setGroupBy)) {
                    Text("language").tag(GroupBy.language)
                    Text("tag").tag(GroupBy.tag)
                    Text("month").tag(GroupBy.month)
                    Text("user").tag(GroupBy.user)
                }
                FieldRow(label: "Only tags (comma-separated)", text: bind(r.tags, reports.setTags))
                JobRow(job: r.job, start: reports.start, cancel: reports.cancel)
                ProblemRow(problem: r.problem)
                if let url = r.downloadUrl {
                    Link("Open", destination: url)
                    ShareLink(item: url)
                }
            }
            Section("Our year in PoCs") {
                FieldRow(label: "Year", text: bind(String(v.year), { t in if let y = Int32(t) { video.setYear(y) } }), error: v.fieldErrors["year"])
                FieldRow(label: "Title", text: bind(v.title, video.setTitle), error: v.fieldErrors["title"])
                JobRow(job: v.job, start: video.start, cancel: video.cancel)
                ProblemRow(problem: v.problem)
                if let url = v.playUrl {
                    if let thumbnail = v.thumbnailUrl {
                        AsyncImage(url: thumbnail) { image in image.resizable().scaledToFit() } placeholder: { ProgressView() }
                    }
                    VideoPlayer(player: AVPlayer(url: url)).frame(height: 220)
                    ShareLink(item: url, message: Text(v.shareText ?? ""))
                }
            }
        }
        .navigationTitle("Reports")
    }
}

struct JobRow: View {
    let job: JobView?
    let start: () -> Void
    let cancel: () -> Void

    var body: some View {
        if let job, job.running {
            ProgressView(value: Double(job.progress), total: 100) { Text("\(job.progress)%") }
            Button("Cancel", role: .cancel, action: cancel)
        } else {
            if job?.state == .failed { Text("Failed: \(job?.failure ?? "unknown")").foregroundStyle(.red) }
            if job?.state == .cancelled { Text("Cancelled.") }
            Button(job == nil ? "Start" : "Start again", action: start)
        }
    }
}
