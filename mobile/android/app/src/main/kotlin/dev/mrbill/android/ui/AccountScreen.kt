package dev.mrbill.android.ui

import androidx.compose.material3.Button
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.mrbill.viewmodel.AppModel
import dev.mrbill.viewmodel.Problem

/** Profile, password, sign out. */
@Composable
fun AccountScreen(app: AppModel) {
    val model = screenModel { app.accountScreen() }
    val s by model.state.collectAsStateWithLifecycle()
    val e = s.fieldErrors
    Form {
        Text(s.user?.email ?: "", style = MaterialTheme.typography.titleMedium)
        Field("Display name", s.displayName, model::setDisplayName, e["display_name"])
        Button(onClick = model::saveProfile, enabled = !s.busy) { Text("Save profile") }
        HorizontalDivider()
        Field("Current password", s.currentPassword, model::setCurrentPassword, e["current_password"], secret = true)
        Field("New password", s.newPassword, model::setNewPassword, e["new_password"], secret = true)
        Button(onClick = model::changePassword, enabled = !s.busy) { Text("Change password") }
        s.notice?.let { Text(it) }
        if (s.problem !is Problem.Invalid) ProblemLine(s.problem)
        HorizontalDivider()
        OutlinedButton(onClick = app::signOut) { Text("Sign out") }
    }
}
