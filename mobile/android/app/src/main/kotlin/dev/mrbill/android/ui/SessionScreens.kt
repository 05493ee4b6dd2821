package dev.mrbill.android.ui

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableLongStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.mrbill.viewmodel.AppModel
import dev.mrbill.viewmodel.Problem
import dev.mrbill.viewmodel.SignInMode
import kotlinx.coroutines.delay

@Composable
fun CompanyScreen(app: AppModel) {
    val model = screenModel { app.companyScreen() }
    val s by model.state.collectAsStateWithLifecycle()
    Form {
        Text("Mr. Bill", style = MaterialTheme.typography.headlineLarge)
        Text("Your company's name, or your work email.")
        Field("Company or work email", s.input, model::setInput, keyboard = KeyboardType.Email)
        ProblemLine(s.problem)
        Button(onClick = model::submit, enabled = s.canSubmit) { Text(if (s.busy) "Finding…" else "Continue") }
    }
}

@Composable
fun SignInScreen(app: AppModel, company: String, notice: String?) {
    val model = screenModel(key = "sign-in-$company") { app.signInScreen() }
    val s by model.state.collectAsStateWithLifecycle()
    // The throttle's countdown, ticking once a second while it runs.
    var now by remember { mutableLongStateOf(System.currentTimeMillis()) }
    LaunchedEffect(s.blockedUntilMs) {
        while (System.currentTimeMillis() < s.blockedUntilMs) {
            now = System.currentTimeMillis()
            delay(1_000)
        }
        now = System.currentTimeMillis()
    }
    val wait = s.waitSecs(now)
    val errors = s.fieldErrors
    Form {
        Text(company, style = MaterialTheme.typography.headlineMedium)
        (s.notice ?: notice)?.let { Text(it, style = MaterialTheme.typography.bodyMedium) }
        Field("Work email", s.email, model::setEmail, errors["email"], keyboard = KeyboardType.Email)
        when (s.mode) {
            SignInMode.LOGIN, SignInMode.SIGN_UP -> Field("Password", s.password, model::setPassword, errors["password"], secret = true)
            SignInMode.REGISTER -> {
                Field("Password", s.password, model::setPassword, errors["password"], secret = true)
                Field("Invite code", s.invite, model::setInvite, errors["invite_token"])
            }
            SignInMode.CONFIRM -> Field("Code from the mail", s.code, model::setCode, errors["code"], keyboard = KeyboardType.Number)
            SignInMode.FORGOT -> {}
            SignInMode.RESET -> {
                Field("Code from the mail", s.code, model::setCode, errors["token"])
                Field("New password", s.newPassword, model::setNewPassword, errors["new_password"], secret = true)
            }
        }
        if (s.problem !is Problem.Invalid && s.problem !is Problem.TooManyAttempts) ProblemLine(s.problem)
        if (wait > 0) Text("Too many attempts. Try again in $wait s.", color = MaterialTheme.colorScheme.error)
        Button(onClick = model::submit, enabled = !s.busy && wait == 0L) {
            Text(
                when (s.mode) {
                    SignInMode.LOGIN -> "Sign in"
                    SignInMode.REGISTER -> "Create account"
                    SignInMode.SIGN_UP -> "Sign up"
                    SignInMode.CONFIRM -> "Confirm"
                    SignInMode.FORGOT -> "Mail me a code"
                    SignInMode.RESET -> "Set new password"
                },
            )
        }
        if (s.mode != SignInMode.LOGIN) TextButton(onClick = { model.show(SignInMode.LOGIN) }) { Text("Back to sign in") }
        if (s.mode == SignInMode.LOGIN) {
            TextButton(onClick = { model.show(SignInMode.FORGOT) }) { Text("Forgot password?") }
            TextButton(onClick = { model.show(SignInMode.REGISTER) }) { Text("I have an invite") }
            TextButton(onClick = { model.show(SignInMode.SIGN_UP) }) { Text("Sign up with my work email") }
        }
        TextButton(onClick = app::switchCompany) { Text("Another company") }
    }
}

@Composable
fun SuspendedScreen(company: String, onOther: () -> Unit) {
    Column(
        Modifier.fillMaxSize().padding(24.dp),
        verticalArrangement = Arrangement.spacedBy(16.dp, Alignment.CenterVertically),
        horizontalAlignment = Alignment.CenterHorizontally,
    ) {
        Text(company, style = MaterialTheme.typography.headlineMedium)
        Text("This company's account is suspended. Your data is kept; ask your administrator to reactivate it.")
        TextButton(onClick = onOther) { Text("Another company") }
    }
}
