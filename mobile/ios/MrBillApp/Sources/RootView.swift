import MrBillKit
import SwiftUI

/// The app by session state: company → sign-in → the signed-in tabs (or "suspended").
struct RootView: View {
    @ObservedObject var app: AppModel

    var body: some View {
        switch app.state {
        case .starting:
            ProgressView()
        case .choosingCompany:
            CompanyView(app: app)
        case let .signingIn(company, notice):
            SignInView(app: app, company: company.tenant, notice: notice).id(company.tenant)
        case let .suspended(company):
            SuspendedView(company: company.tenant, other: app.switchCompany)
        case .signedIn:
            TabView {
                NavigationStack { PocListView(app: app) }
                    .tabItem { Label("PoCs", systemImage: "list.bullet") }
                NavigationStack { DashboardView(app: app) }
                    .tabItem { Label("Dashboard", systemImage: "chart.bar") }
                NavigationStack { DojosView(app: app) }
                    .tabItem { Label("Dojos", systemImage: "chevron.left.forwardslash.chevron.right") }
                NavigationStack { MediaView(app: app) }
                    .tabItem { Label("Reports", systemImage: "film") }
                NavigationStack { AccountView(app: app) }
                    .tabItem { Label("Account", systemImage: "person") }
            }
        }
    }
}

extension Problem {
    /// What a problem says to the user (the same words as the Android app).
    var text: String {
        switch self {
        case .offline: return "Cannot reach Mr. Bill. Check your connection and try again."
        case .noSuchCompany: return "No company by that name or email domain."
        case .suspended: return "This company's account is suspended. Ask your administrator."
        case .signedOut: return "Your session ended. Sign in again."
        case .wrongPassword: return "Wrong email or password."
        case .invalid: return "Check the highlighted fields."
        case .notFound: return "Not found (it may have been deleted)."
        case let .refused(code, detail):
            switch code {
            case "invalid_invite": return "This invite is not valid any more (used, revoked or expired). Ask for a new one."
            case "registration_closed": return "This company signs people up by invite only."
            case "invalid_confirmation_code", "invalid_reset_token": return "That code is wrong or expired."
            default: return detail.isEmpty ? "Not allowed." : detail
            }
        case let .tooManyAttempts(secs): return "Too many attempts. Try again in \(secs) s."
        case .serverTrouble: return "Mr. Bill could not answer just now. Try again."
        }
    }

    var isInvalid: Bool {
        if case .invalid = self { return true }
        return false
    }
}

/// A form field with its inline error (the API's message for that field).
struct FieldRow: View {
    let label: String
    @Binding var text: String
    var error: String?
    var secret = false

    var body: some View {
        VStack(alignment: .leading, spacing: 2) {
            if secret {
                SecureField(label, text: $text)
            } else {
                TextField(label, text: $text).textInputAutocapitalization(.never).autocorrectionDisabled()
            }
            if let error {
                Text(error).font(.caption).foregroundStyle(.red)
            }
        }
    }
}

/// The screen's problem, unless it is shown on fields.
struct ProblemRow: View {
    let problem: Problem?

    var body: some View {
        if let problem, !problem.isInvalid {
            Text(problem.text).font(.callout).foregroundStyle(.red)
        }
    }
}

/// A binding that reads the model's state and sends edits as intents.
func bind<T>(_ get: @autoclosure @escaping () -> T, _ set: @escaping (T) -> Void) -> Binding<T> {
    Binding(get: get, set: set)
}
