/*
 * The no-op plugin floor of the benchmarks: an OpenVPN plugin (API v3) that registers for
 * AUTH_USER_PASS_VERIFY and accepts every login at once. Whatever an authenticating plugin
 * costs beyond this is the cost of its decision, not of OpenVPN calling a plugin.
 *
 * Built by the bench binary: cc -shared -fPIC -O2 -o noop-plugin.so noop-plugin.c
 */
#include <openvpn/openvpn-plugin.h>

static int handle;

OPENVPN_EXPORT int
openvpn_plugin_open_v3(const int version, struct openvpn_plugin_args_open_in const *args,
                       struct openvpn_plugin_args_open_return *ret)
{
    (void)args;
    if (version < OPENVPN_PLUGINv3_STRUCTVER)
    {
        return OPENVPN_PLUGIN_FUNC_ERROR;
    }
    ret->type_mask = OPENVPN_PLUGIN_MASK(OPENVPN_PLUGIN_AUTH_USER_PASS_VERIFY);
    ret->handle = (openvpn_plugin_handle_t *)&handle;
    return OPENVPN_PLUGIN_FUNC_SUCCESS;
}

OPENVPN_EXPORT int
openvpn_plugin_func_v3(const int version, struct openvpn_plugin_args_func_in const *args,
                       struct openvpn_plugin_args_func_return *ret)
{
    (void)version;
    (void)ret;
    return args->type == OPENVPN_PLUGIN_AUTH_USER_PASS_VERIFY ? OPENVPN_PLUGIN_FUNC_SUCCESS
                                                              : OPENVPN_PLUGIN_FUNC_ERROR;
}

OPENVPN_EXPORT void
openvpn_plugin_close_v1(openvpn_plugin_handle_t handle)
{
    (void)handle;
}
