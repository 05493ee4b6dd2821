import Foundation

public struct CompanyState: Equatable {
    public var input = ""
    public var busy = false
    public var problem: Problem?
    public var canSubmit: Bool { !input.trimmingCharacters(in: .whitespaces).isEmpty && !busy }
}

/// The first screen: which company the user works for (slug or work email).
@MainActor
public final class CompanyModel: ScreenModel, ObservableObject {
    @Published public private(set) var state = CompanyState()

    public func setInput(_ text: String) {
        state.input = text
        state.problem = nil
    }

    public func submit() {
        let input = state.input.trimmingCharacters(in: .whitespaces)
        guard !input.isEmpty, !state.busy else { return }
        state.busy = true
        state.problem = nil
        act({ self.state.busy = false; self.state.problem = $0 }) {
            let company = try await self.app.core.resolve(company: input)
            self.state.busy = false
            self.app.companyChosen(company)
        }
    }
}

/// The sign-in screen's forms.
public enum SignInMode: Equatable {
    case login, register, signUp, confirm, forgot, reset
}

public struct SignInState: Equatable {
    public var mode = SignInMode.login
    public var email = ""
    public var password = ""
    public var invite = ""
    public var code = ""
    public var newPassword = ""
    public var busy = false
    public var problem: Problem?
    public var notice: String?
    /// Until when the server's throttle refuses another attempt.
    public var blockedUntil = Date.distantPast

    public var fieldErrors: [String: String] { problem?.fieldErrors ?? [:] }

    /// Seconds left before another attempt is allowed (0: now).
    public func waitSecs(now: Date = Date()) -> Int { max(0, Int(ceil(blockedUntil.timeIntervalSince(now)))) }
}

/// Sign in, register with an invite, open sign-up with a mailed code, forgot/reset password.
@MainActor
public final class SignInModel: ScreenModel, ObservableObject {
    @Published public private(set) var state = SignInState()

    public func show(_ mode: SignInMode) {
        state.mode = mode
        state.problem = nil
        state.notice = nil
    }

    public func setEmail(_ text: String) { state.email = text }
    public func setPassword(_ text: String) { state.password = text }
    public func setInvite(_ text: String) { state.invite = text }
    public func setCode(_ text: String) { state.code = text }
    public func setNewPassword(_ text: String) { state.newPassword = text }

    /// Does what the current form is for. Refused while the throttle says to wait.
    public func submit() {
        let form = state
        guard !form.busy, form.waitSecs() == 0 else { return }
        state.busy = true
        state.problem = nil
        state.notice = nil
        act(failed) {
            let core = self.app.core
            let email = form.email.trimmingCharacters(in: .whitespaces)
            switch form.mode {
            case .login:
                self.app.signedIn(try await core.login(email: email, password: form.password))
            case .register:
                self.app.signedIn(try await core.register(email: email, password: form.password, invite: form.invite.trimmingCharacters(in: .whitespaces)))
            case .signUp:
                _ = try await core.signUp(email: email, password: form.password)
                self.done(.confirm, "We mailed a code to \(email).")
            case .confirm:
                self.app.signedIn(try await core.confirmEmail(email: email, code: form.code.trimmingCharacters(in: .whitespaces)))
            case .forgot:
                try await core.forgotPassword(email: email)
                self.done(.reset, "If \(email) has an account, a reset code is on its way.")
            case .reset:
                try await core.resetPassword(token: form.code.trimmingCharacters(in: .whitespaces), newPassword: form.newPassword)
                self.state.password = ""
                self.state.newPassword = ""
                self.state.code = ""
                self.done(.login, "Your password was changed. Sign in with the new one.")
            }
            self.state.busy = false
        }
    }

    private func done(_ next: SignInMode, _ notice: String) {
        state.mode = next
        state.busy = false
        state.notice = notice
    }

    private func failed(_ problem: Problem) {
        state.busy = false
        state.problem = problem
        if case let .tooManyAttempts(secs) = problem {
            state.blockedUntil = Date().addingTimeInterval(TimeInterval(secs))
        }
    }
}

public struct AccountState: Equatable {
    public var user: User?
    public var displayName = ""
    public var currentPassword = ""
    public var newPassword = ""
    public var busy = false
    public var problem: Problem?
    public var notice: String?
    public var fieldErrors: [String: String] { problem?.fieldErrors ?? [:] }
}

/// The profile (display name) and changing the password.
@MainActor
public final class AccountModel: ScreenModel, ObservableObject {
    @Published public private(set) var state = AccountState()

    override init(app: AppModel) {
        super.init(app: app)
        act({ self.state.problem = $0 }) {
            let user = try await withRetry { try await self.app.core.me() }
            self.state.user = user
            self.state.displayName = user.displayName
        }
    }

    public func setDisplayName(_ text: String) { state.displayName = text }
    public func setCurrentPassword(_ text: String) { state.currentPassword = text }
    public func setNewPassword(_ text: String) { state.newPassword = text }

    public func saveProfile() {
        run("Profile saved.") {
            let user = try await self.app.core.updateProfile(displayName: self.state.displayName.trimmingCharacters(in: .whitespaces))
            self.app.userChanged(user)
            self.state.user = user
            self.state.displayName = user.displayName
        }
    }

    /// Other devices are signed out; this one continues.
    public func changePassword() {
        run("Password changed. Your other devices were signed out.") {
            _ = try await self.app.core.changePassword(currentPassword: self.state.currentPassword, newPassword: self.state.newPassword)
            self.state.currentPassword = ""
            self.state.newPassword = ""
        }
    }

    private func run(_ notice: String, _ work: @escaping @MainActor () async throws -> Void) {
        guard !state.busy else { return }
        state.busy = true
        state.problem = nil
        state.notice = nil
        act({ self.state.busy = false; self.state.problem = $0 }) {
            try await work()
            self.state.busy = false
            self.state.notice = notice
        }
    }
}
