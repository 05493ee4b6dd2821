import Foundation

/// Where the app is: which part of it the user can see.
public enum AppState: Equatable {
    case starting
    case choosingCompany
    case signingIn(company: Company, notice: String?)
    case signedIn(company: Company, user: User)
    case suspended(company: Company)
}

/// The app's root: the session state every screen depends on, and the factory of the screens'
/// models. Mirrors the Android app's `AppModel` one to one.
@MainActor
public final class AppModel: ObservableObject {
    @Published public private(set) var state: AppState = .starting
    public let core: MrBillProtocol

    public init(core: MrBillProtocol) {
        self.core = core
    }

    /// Picks up a stored session (the app was restarted) or starts at the company screen.
    public func start() {
        guard let company = core.company() else {
            state = .choosingCompany
            return
        }
        guard core.signedIn() else {
            state = .signingIn(company: company, notice: nil)
            return
        }
        Task {
            do {
                let user = try await withRetry { try await core.me() }
                state = .signedIn(company: company, user: user)
            } catch {
                switch Problem(error) {
                case .suspended: state = .suspended(company: company)
                case .signedOut: state = .signingIn(company: company, notice: "Your session ended. Sign in again.")
                default: state = .signingIn(company: company, notice: "The server cannot be reached. Try again.")
                }
            }
        }
    }

    func companyChosen(_ company: Company) {
        state = company.suspended ? .suspended(company: company) : .signingIn(company: company, notice: nil)
    }

    func signedIn(_ user: User) {
        guard let company = core.company() else {
            state = .choosingCompany
            return
        }
        state = .signedIn(company: company, user: user)
    }

    func userChanged(_ user: User) {
        if case let .signedIn(company, _) = state { state = .signedIn(company: company, user: user) }
    }

    /// The session ended under a screen (revoked, expired, password changed elsewhere).
    func sessionEnded() {
        guard let company = core.company() else {
            state = .choosingCompany
            return
        }
        if case .signingIn = state { return }
        state = .signingIn(company: company, notice: "Your session ended. Sign in again.")
    }

    func companySuspended() {
        if let company = core.company() { state = .suspended(company: company) }
    }

    /// Signs out here and on the server.
    public func signOut() {
        Task {
            try? await core.logout()
            if let company = core.company() {
                state = .signingIn(company: company, notice: nil)
            } else {
                state = .choosingCompany
            }
        }
    }

    public func switchCompany() {
        state = .choosingCompany
    }

    public func companyScreen() -> CompanyModel { CompanyModel(app: self) }
    public func signInScreen() -> SignInModel { SignInModel(app: self) }
    public func accountScreen() -> AccountModel { AccountModel(app: self) }
    public func pocList() -> PocListModel { PocListModel(app: self) }
    public func pocEditor(id: String?) -> PocEditorModel { PocEditorModel(app: self, id: id) }
    public func dashboard() -> DashboardModel { DashboardModel(app: self) }
    public func reports() -> ReportModel { ReportModel(app: self) }
    public func video() -> VideoModel { VideoModel(app: self) }
    public func dojos() -> DojosModel { DojosModel(app: self) }
    public func dojoRoom(dojo: Dojo, call: CallEngine?) -> DojoRoomModel { DojoRoomModel(app: self, dojo: dojo, call: call) }
}

/// What every screen's model shares: its tasks (cancelled by `close()` when the screen goes),
/// and one way to run an action — an error becomes a `Problem` for the screen, and a session
/// that ended signs the whole app out.
@MainActor
public class ScreenModel {
    let app: AppModel
    private var tasks: [Task<Void, Never>] = []

    init(app: AppModel) {
        self.app = app
    }

    @discardableResult
    func act(_ onProblem: @escaping @MainActor (Problem) -> Void, _ work: @escaping @MainActor () async throws -> Void) -> Task<Void, Never> {
        let task = Task { @MainActor in
            do {
                try await work()
            } catch is CancellationError {
                return
            } catch {
                let problem = Problem(error)
                switch problem {
                case .signedOut: self.app.sessionEnded()
                case .suspended: self.app.companySuspended()
                default: break
                }
                onProblem(problem)
            }
        }
        tasks.append(task)
        return task
    }

    /// The screen went away: stop its work.
    public func close() {
        tasks.forEach { $0.cancel() }
        tasks.removeAll()
    }
}
