// luatest evaluates an Argo CD custom health check (a Lua script) on one object, the way the
// Argo CD application controller does, and prints the resulting health as JSON:
//
//	luatest [-open-libs] SCRIPT.lua OBJECT.json     (OBJECT "-" or absent: standard input)
//	=> {"status":"Progressing","message":"..."}
//
// What it mirrors of Argo CD (util/lua in argoproj/argo-cd), with the same interpreter,
// github.com/yuin/gopher-lua (Lua 5.1 semantics):
//   - the state opens only the package, base and table libraries and a reduced os library
//     (time, date, clock, difftime) unless -open-libs is given, like a script from argocd-cm
//     without resource.customizations.useOpenLibs: the string library is NOT there;
//   - the script runs with a one-second deadline;
//   - the object becomes the global `obj`: JSON objects are Lua tables keyed by string, arrays
//     are 1-based Lua tables built by appending in order, numbers are Lua numbers, booleans are
//     booleans, and null is nil (so the key is absent);
//   - the script's return value must be a table; it is encoded with layeh.com/gopher-json and
//     decoded into {status, message}; a status outside Healthy, Progressing, Degraded,
//     Suspended, Missing and Unknown becomes Unknown with Argo CD's own message.
//
// Exit status: 0 with the health on stdout; 1 when the script fails or returns no table (Argo CD
// then reports an error instead of a health); 2 on bad usage or input.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// health is the shape Argo CD decodes a health script's table into.
type health struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

var validStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

// The message Argo CD reports when a script returns a status it does not know.
const invalidHealthStatus = "Lua returned an invalid health status"

// safeOsFunctions are the os functions a health script may call when the open libraries are off.
var safeOsFunctions = []string{"time", "date", "clock", "difftime"}

func main() {
	openLibs := flag.Bool("open-libs", false,
		"open every standard library (like resource.customizations.useOpenLibs.<group_kind>: true)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: luatest [-open-libs] SCRIPT.lua [OBJECT.json|-]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 || flag.NArg() > 2 {
		flag.Usage()
		os.Exit(2)
	}
	script, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fail(2, "cannot read the script: %v", err)
	}
	object, err := readObject(flag.Arg(1))
	if err != nil {
		fail(2, "cannot read the object: %v", err)
	}
	result, err := evaluate(string(script), object, *openLibs)
	if err != nil {
		fail(1, "%v", err)
	}
	out, err := json.Marshal(result)
	if err != nil {
		fail(1, "cannot encode the result: %v", err)
	}
	fmt.Println(string(out))
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "luatest: "+format+"\n", args...)
	os.Exit(code)
}

func readObject(path string) (map[string]any, error) {
	var data []byte
	var err error
	if path == "" || path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	var object map[string]any
	if err := json.Unmarshal(data, &object); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return object, nil
}

func evaluate(script string, object map[string]any, openLibs bool) (*health, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer state.Close()
	if !openLibs {
		for _, lib := range []struct {
			name string
			open lua.LGFunction
		}{
			{lua.LoadLibName, lua.OpenPackage},
			{lua.BaseLibName, lua.OpenBase},
			{lua.TabLibName, lua.OpenTable},
			{lua.OsLibName, lua.OpenOs},
		} {
			if err := state.CallByParam(lua.P{Fn: state.NewFunction(lib.open), NRet: 0, Protect: true},
				lua.LString(lib.name)); err != nil {
				return nil, fmt.Errorf("opening the %s library: %w", lib.name, err)
			}
		}
		restrictOs(state)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(script); err != nil {
		return nil, err
	}
	returned := state.Get(-1)
	if returned.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return nil, err
	}
	result := &health{}
	if err := json.Unmarshal(encoded, result); err != nil {
		return nil, err
	}
	if !validStatuses[result.Status] {
		return &health{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return result, nil
}

// restrictOs keeps only the harmless os functions, in the global table and for require("os").
func restrictOs(state *lua.LState) {
	full, ok := state.GetGlobal(lua.OsLibName).(*lua.LTable)
	safe := state.NewTable()
	if ok {
		for _, name := range safeOsFunctions {
			safe.RawSetString(name, full.RawGetString(name))
		}
	}
	state.SetGlobal(lua.OsLibName, safe)
	if pkg, ok := state.GetGlobal(lua.LoadLibName).(*lua.LTable); ok {
		if loaded, ok := pkg.RawGetString("loaded").(*lua.LTable); ok {
			loaded.RawSetString(lua.OsLibName, safe)
		}
	}
}

// toLua converts a decoded JSON value into the Lua value Argo CD hands a health script.
func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		array := state.CreateTable(len(v), 0)
		for _, item := range v {
			array.Append(toLua(state, item))
		}
		return array
	case map[string]any:
		table := state.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(state, item))
		}
		return table
	}
	return lua.LNil
}
