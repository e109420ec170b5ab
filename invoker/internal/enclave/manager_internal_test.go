package enclave

import "testing"

func TestPickOwner(t *testing.T) {
	tests := []struct {
		name      string
		owners    []ownerView
		starting  int
		maxOwners int
		want      pick
	}{
		{"cold image starts", nil, 0, 1, pick{Kind: pickStart}},
		{"cold image already starting waits", nil, 1, 1, pick{Kind: pickWait}},
		{"cold image starting, more allowed, still waits", nil, 1, 4, pick{Kind: pickWait}},
		{"one owner with room", []ownerView{{Free: 3}}, 0, 1, pick{Kind: pickUse, Index: 0}},
		{"most free wins", []ownerView{{Free: 1}, {Free: 5}, {Free: 2}}, 0, 3, pick{Kind: pickUse, Index: 1}},
		{"tie goes to the first", []ownerView{{Free: 2}, {Free: 2}}, 0, 2, pick{Kind: pickUse, Index: 0}},
		{"suspect avoided", []ownerView{{Free: 8, Suspect: true}, {Free: 1}}, 0, 2, pick{Kind: pickUse, Index: 1}},
		{"suspect used when it is all there is", []ownerView{{Free: 0}, {Free: 2, Suspect: true}}, 0, 2, pick{Kind: pickUse, Index: 1}},
		{"full, another allowed", []ownerView{{Free: 0}}, 0, 2, pick{Kind: pickStart}},
		{"full, none allowed", []ownerView{{Free: 0}}, 0, 1, pick{Kind: pickWait}},
		{"full, another starting", []ownerView{{Free: 0}}, 1, 3, pick{Kind: pickWait}},
		{"all full at the max", []ownerView{{Free: 0}, {Free: 0}}, 0, 2, pick{Kind: pickWait}},
		{"room even while starting", []ownerView{{Free: 1}}, 1, 2, pick{Kind: pickUse, Index: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pickOwner(tc.owners, tc.starting, tc.maxOwners); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOwnerID(t *testing.T) {
	if got := ownerID("nodejs:20", 3); got != "nodejs-20-3" {
		t.Fatal(got)
	}
	if got := ownerID("a/b c", 1); got != "a-b-c-1" {
		t.Fatal(got)
	}
}
