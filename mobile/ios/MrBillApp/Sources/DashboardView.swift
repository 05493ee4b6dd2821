import Charts
import MrBillKit
import SwiftUI

/// Totals, PoCs per month, top languages and tags (Swift Charts).
struct DashboardView: View {
    @StateObject private var model: DashboardModel

    init(app: AppModel) {
        _model = StateObject(wrappedValue: app.dashboard())
    }

    var body: some View {
        let s = model.state
        List {
            if let d = s.dashboard {
                Text("\(d.total) PoCs in \(d.languages) languages").font(.headline)
                Section("Per month") { chart(s.months) }
                Section("Languages") { chart(s.languages, horizontal: true) }
                Section("Tags") { chart(s.tags, horizontal: true) }
            } else if s.loading {
                ProgressView()
            } else {
                ProblemRow(problem: s.problem)
                Button("Try again", action: model.refresh)
            }
        }
        .refreshable { model.refresh() }
        .navigationTitle("Dashboard")
    }

    private func chart(_ bars: [Bar], horizontal: Bool = false) -> some View {
        Chart(bars) { bar in
            if horizontal {
                BarMark(x: .value("PoCs", bar.value), y: .value("", bar.label))
            } else {
                BarMark(x: .value("Month", bar.label), y: .value("PoCs", bar.value))
            }
        }
        .frame(height: horizontal ? CGFloat(28 * max(bars.count, 1)) : 180)
    }
}
