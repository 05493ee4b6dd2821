package dev.mrbill.android.ui

import androidx.compose.foundation.layout.padding
import androidx.compose.material.icons.Icons
import androidx.compose.material.icons.filled.BarChart
import androidx.compose.material.icons.filled.Code
import androidx.compose.material.icons.filled.List
import androidx.compose.material.icons.filled.Movie
import androidx.compose.material.icons.filled.Person
import androidx.compose.material3.Icon
import androidx.compose.material3.NavigationBar
import androidx.compose.material3.NavigationBarItem
import androidx.compose.material3.Scaffold
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.vector.ImageVector
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import androidx.navigation.NavHostController
import androidx.navigation.compose.NavHost
import androidx.navigation.compose.composable
import androidx.navigation.compose.currentBackStackEntryAsState
import androidx.navigation.compose.rememberNavController
import dev.mrbill.viewmodel.AppModel
import dev.mrbill.viewmodel.AppState
import dev.mrbill.viewmodel.CallEngine
import dev.mrbill.wire.Dojo

/** The app by session state: company → sign-in → the signed-in tabs (or "suspended"). */
@Composable
fun MrBillRoot(app: AppModel, calls: () -> CallEngine) {
    val state by app.state.collectAsStateWithLifecycle()
    when (val s = state) {
        AppState.Starting -> Loading()
        AppState.ChoosingCompany -> CompanyScreen(app)
        is AppState.SigningIn -> SignInScreen(app, s.company.tenant, s.notice)
        is AppState.Suspended -> SuspendedScreen(s.company.tenant, onOther = app::switchCompany)
        is AppState.SignedIn -> SignedIn(app, calls)
    }
}

private enum class Tab(val route: String, val label: String, val icon: ImageVector) {
    Pocs("pocs", "PoCs", Icons.Default.List),
    Dashboard("dashboard", "Dashboard", Icons.Default.BarChart),
    Dojos("dojos", "Dojos", Icons.Default.Code),
    Media("media", "Reports", Icons.Default.Movie),
    Account("account", "Account", Icons.Default.Person),
}

@Composable
private fun SignedIn(app: AppModel, calls: () -> CallEngine) {
    val nav = rememberNavController()
    val entry by nav.currentBackStackEntryAsState()
    var room by remember { mutableStateOf<Dojo?>(null) }
    Scaffold(
        bottomBar = {
            if (entry?.destination?.route in Tab.entries.map { it.route }) {
                NavigationBar {
                    Tab.entries.forEach { tab ->
                        NavigationBarItem(
                            selected = entry?.destination?.route == tab.route,
                            onClick = { nav.switchTo(tab.route) },
                            icon = { Icon(tab.icon, contentDescription = null) },
                            label = { Text(tab.label) },
                        )
                    }
                }
            }
        },
    ) { padding ->
        NavHost(nav, startDestination = Tab.Pocs.route, modifier = Modifier.padding(padding)) {
            composable(Tab.Pocs.route) {
                PocListScreen(app, onOpen = { id -> nav.navigate("poc/$id") }, onCreate = { nav.navigate("poc/new") })
            }
            composable("poc/{id}") { back ->
                val id = back.arguments?.getString("id")?.takeIf { it != "new" }
                PocEditorScreen(app, id, done = { nav.popBackStack() })
            }
            composable(Tab.Dashboard.route) { DashboardScreen(app) }
            composable(Tab.Dojos.route) {
                DojosScreen(app, onOpen = { dojo -> room = dojo; nav.navigate("room") })
            }
            composable("room") {
                room?.let { dojo -> DojoRoomScreen(app, dojo, calls, leave = { nav.popBackStack() }) }
            }
            composable(Tab.Media.route) { MediaScreen(app) }
            composable(Tab.Account.route) { AccountScreen(app) }
        }
    }
}

private fun NavHostController.switchTo(route: String) = navigate(route) {
    popUpTo(graph.startDestinationId) { saveState = true }
    launchSingleTop = true
    restoreState = true
}
