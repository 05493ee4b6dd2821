import MrBillKit
import SwiftUI

struct CompanyView: View {
    @StateObject private var model: CompanyModel

    init(app: AppModel) {
        _model = StateObject(wrappedValue: app.companyScreen())
    }

    var body: some View {
        Form {
            Section {
                Text("Mr. Bill").font(.largeTitle)
                Text("Your company's name, or your work email.")
                FieldRow(label: "Company or work email", text: bind(model.state.input, model.setInput))
                    .keyboardType(.emailAddress)
                ProblemRow(problem: model.state.problem)
                Button(model.state.busy ? "Finding…" : "Continue", action: model.submit)
                    .disabled(!model.state.canSubmit)
            }
        }
    }
}

struct SignInView: View {
    let app: AppModel
    let company: String
    let notice: String?
    @StateObject private var model: SignInModel

    init(app: AppModel, company: String, notice: String?) {
        self.app = app
        self.company = company
        self.notice = notice
        _model = StateObject(wrappedValue: app.signInScreen())
    }

    var body: some View {
        // The throttle's countdown ticks once a second.
        TimelineView(.periodic(from: .now, by: 1)) { context in
            let s = model.state
            let wait = s.waitSecs(now: context.date)
            let e = s.fieldErrors
            Form {
                Section(company) {
                    if let text = s.notice ?? notice { Text(text) }
                    FieldRow(label: "Work email", text: bind(s.email, model.setEmail), error: e["email"])
                    switch s.mode {
                    case .login, .signUp:
                        FieldRow(label: "Password", text: bind(s.password, model.setPassword), error: e["password"], secret: true)
                    case .register:
                        FieldRow(label: "Password", text: bind(s.password, model.setPassword), error: e["password"], secret: true)
                        FieldRow(label: "Invite code", text: bind(s.invite, model.setInvite), error: e["invite_token"])
                    case .confirm:
                        FieldRow(label: "Code from the mail", text: bind(s.code, model.setCode), error: e["code"])
                    case .forgot:
                        EmptyView()
                    case .reset:
                        FieldRow(label: "Code from the mail", text: bind(s.code, model.setCode), error: e["token"])
                        FieldRow(label: "New password", text: bind(s.newPassword, model.setNewPassword), error: e["new_password"], secret: true)
                    }
                    if wait > 0 {
                        Text("Too many attempts. Try again in \(wait) s.").foregroundStyle(.red)
                    } else {
                        ProblemRow(problem: s.problem)
                    }
                    Button(title(s.mode), action: model.submit).disabled(s.busy || wait > 0)
                }
                Section {
                    if s.mode == .login {
                        Button("Forgot password?") { model.show(.forgot) }
                        Button("I have an invite") { model.show(.register) }
                        Button("Sign up with my work email") { model.show(.signUp) }
                    } else {
                        Button("Back to sign in") { model.show(.login) }
                    }
                    Button("Another company", action: app.switchCompany)
                }
            }
        }
    }

    private func title(_ mode: SignInMode) -> String {
        switch mode {
        case .login: return "Sign in"
        case .register: return "Create account"
        case .signUp: return "Sign up"
        case .confirm: return "Confirm"
        case .forgot: return "Mail me a code"
        case .reset: return "Set new password"
        }
    }
}

struct SuspendedView: View {
    let company: String
    let other: () -> Void

    var body: some View {
        VStack(spacing: 16) {
            Text(company).font(.title)
            Text("This company's account is suspended. Your data is kept; ask your administrator to reactivate it.")
                .multilineTextAlignment(.center)
            Button("Another company", action: other)
        }
        .padding()
    }
}

struct AccountView: View {
    let app: AppModel
    @StateObject private var model: AccountModel

    init(app: AppModel) {
        self.app = app
        _model = StateObject(wrappedValue: app.accountScreen())
    }

    var body: some View {
        let s = model.state
        let e = s.fieldErrors
        Form {
            Section("Profile") {
                Text(s.user?.email ?? "")
                FieldRow(label: "Display name", text: bind(s.displayName, model.setDisplayName), error: e["display_name"])
                Button("Save profile", action: model.saveProfile).disabled(s.busy)
            }
            Section("Password") {
                FieldRow(label: "Current password", text: bind(s.currentPassword, model.setCurrentPassword), error: e["current_password"], secret: true)
                FieldRow(label: "New password", text: bind(s.newPassword, model.setNewPassword), error: e["new_password"], secret: true)
                Button("Change password", action: model.changePassword).disabled(s.busy)
            }
            if let notice = s.notice { Text(notice) }
            ProblemRow(problem: s.problem)
            Button("Sign out", role: .destructive, action: app.signOut)
        }
        .navigationTitle("Account")
    }
}
