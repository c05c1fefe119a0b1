package gossip

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// memberlist v0.7.0 does not tell its users a member's state:
//
//   - the EventDelegate gets NotifyLeave for a member that left and for one
//     that died alike, and the Node it passes has State always StateAlive:
//     memberlist keeps the real state in nodeState.State, which shadows the
//     embedded Node.State and is the only one it ever writes;
//   - there is no event at all when a member becomes suspect or refutes a
//     suspicion;
//   - Members() returns pointers into its table that it rewrites in place under
//     its nodeLock, so reading them afterwards is a data race
//     (hashicorp/memberlist#250, #306).
//
// The print server must show alive/suspect/dead/left, so tableView reads
// memberlist's private node table with reflection: under memberlist's own
// nodeLock (states), or inside an event callback, where memberlist already
// holds that lock (stateLocked). It checks the layout it relies on once, at
// construction; if a memberlist upgrade changes it, newTableView returns nil
// and the package degrades to what the events alone say (no "suspect"; "left"
// told from "dead" by the member's last phase), and TestMemberlistTableLayout
// fails so the upgrade is noticed.
type tableView struct {
	mu      *sync.RWMutex // memberlist.Memberlist.nodeLock
	nodes   reflect.Value // memberlist.Memberlist.nodes, []*nodeState
	nodeMap reflect.Value // memberlist.Memberlist.nodeMap, map[string]*nodeState
	name    []int         // field index of nodeState.Node.Name
	state   []int         // field index of nodeState.State
}

// newTableView returns a view of ml's node table, or nil if the layout is not
// the one this package knows.
func newTableView(ml *memberlist.Memberlist) *tableView {
	if ml == nil {
		return nil
	}
	v := reflect.ValueOf(ml).Elem()
	lock := v.FieldByName("nodeLock")
	nodes := v.FieldByName("nodes")
	nodeMap := v.FieldByName("nodeMap")
	if !lock.IsValid() || lock.Type() != reflect.TypeFor[sync.RWMutex]() ||
		!nodes.IsValid() || nodes.Kind() != reflect.Slice ||
		!nodeMap.IsValid() || nodeMap.Kind() != reflect.Map ||
		nodeMap.Type().Key().Kind() != reflect.String ||
		nodes.Type().Elem() != nodeMap.Type().Elem() {
		return nil
	}
	ptr := nodes.Type().Elem()
	if ptr.Kind() != reflect.Pointer || ptr.Elem().Kind() != reflect.Struct {
		return nil
	}
	st := ptr.Elem()
	name, ok1 := st.FieldByName("Name")
	state, ok2 := st.FieldByName("State")
	if !ok1 || !ok2 || name.Type.Kind() != reflect.String ||
		state.Type != reflect.TypeFor[memberlist.NodeStateType]() ||
		len(state.Index) != 1 { // nodeState's own State, not the embedded Node.State
		return nil
	}
	return &tableView{
		// The one unsafe step: reflection cannot call methods on an
		// unexported field, so take its address. The type was checked above.
		mu:      (*sync.RWMutex)(unsafe.Pointer(lock.UnsafeAddr())),
		nodes:   nodes,
		nodeMap: nodeMap,
		name:    name.Index,
		state:   state.Index,
	}
}

// states returns the state of every member memberlist has in its table (dead
// and left members stay there until memberlist reaps them). It takes
// memberlist's nodeLock for reading, so it must not be called from inside a
// memberlist callback.
func (t *tableView) states() map[string]memberlist.NodeStateType {
	if t == nil {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[string]memberlist.NodeStateType, t.nodes.Len())
	for i := range t.nodes.Len() {
		p := t.nodes.Index(i)
		if p.IsNil() {
			continue
		}
		e := p.Elem()
		out[e.FieldByIndex(t.name).String()] = memberlist.NodeStateType(e.FieldByIndex(t.state).Int())
	}
	return out
}

// stateLocked returns the state of member name. The caller must be inside a
// memberlist event callback, where memberlist holds its nodeLock.
func (t *tableView) stateLocked(name string) (memberlist.NodeStateType, bool) {
	if t == nil {
		return 0, false
	}
	p := t.nodeMap.MapIndex(reflect.ValueOf(name))
	if !p.IsValid() || p.IsNil() {
		return 0, false
	}
	return memberlist.NodeStateType(p.Elem().FieldByIndex(t.state).Int()), true
}
